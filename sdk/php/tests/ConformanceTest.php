<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests;

use Autoheal\Sdk\Tests\Integration\Cli\VerifyCliTest;
use Autoheal\Sdk\Tests\Support\ConformanceCase;
use Autoheal\Sdk\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

/**
 * The conformance kit every SDK must pass: each directory of sdk/conformance/cases (or
 * AUTOHEAL_CONFORMANCE_DIR) is verified as the case says and must give its verdict and
 * reason, by the library and by bin/autoheal-verify. No cases: skipped, or a failure under
 * CI (a kit that vanished must not pass).
 */
final class ConformanceTest extends TestCase
{
    /** @return array<string, array{?string}> */
    public function cases(): array
    {
        $dirs = ConformanceCase::find(ConformanceCase::directory());
        if ($dirs === []) {
            return ['no cases' => [null]];   // an empty provider is an error in PHPUnit
        }
        $cases = [];
        foreach ($dirs as $dir) {
            $cases[basename($dir)] = [$dir];
        }
        return $cases;
    }

    /** @dataProvider cases */
    public function testCase(?string $dir): void
    {
        if ($dir === null) {
            $message = 'no conformance cases under ' . ConformanceCase::directory();
            if (getenv('CI') !== false && getenv('CI') !== '') {
                self::fail($message);
            }
            self::markTestSkipped($message);
        }
        $case = ConformanceCase::load($dir);
        $verdict = $case->run();
        self::assertSame(
            ['verdict' => $case->expectedVerdict, 'reason' => $case->expectedReason],
            $verdict->toArray(),
            $case->name . ($case->description !== '' ? ' (' . $case->description . ')' : '') . ': ' . $verdict->message()
        );
        $this->assertTheCommandLineAgrees($case);
    }

    /** bin/autoheal-verify on the same case (its journal seeded in --state-dir) prints the same verdict. */
    private function assertTheCommandLineAgrees(ConformanceCase $case): void
    {
        $dir = TempDir::create('conformance-cli');
        try {
            $case->seed($dir . '/state');
            $args = ['--install-id', $case->installId, '--now', $case->now, '--state-dir', $dir . '/state'];
            foreach ($case->roots as $i => $root) {
                file_put_contents($dir . '/root' . $i . '.pub', $root . "\n");
                array_push($args, '--trusted-root', $dir . '/root' . $i . '.pub');
            }
            $args[] = $case->dir . '/command.json';
            $bundle = $case->bundle();
            if ($bundle !== null) {
                file_put_contents($dir . '/bundle.json', $bundle);
                $args[] = $dir . '/bundle.json';
            }
            [$code, $out, $err] = VerifyCliTest::runCli($args);
            self::assertSame(json_encode(['verdict' => $case->expectedVerdict, 'reason' => $case->expectedReason]) . "\n", $out, $case->name . ' (command line): ' . $err);
            self::assertSame($case->expectedVerdict === 'accept' ? 0 : 1, $code);
        } finally {
            TempDir::remove($dir);
        }
    }
}
