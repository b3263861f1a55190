<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Cli;

use Autoheal\Sdk\Tests\Support\ConformanceCase;
use Autoheal\Sdk\Tests\Support\Fixtures;
use Autoheal\Sdk\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

/**
 * The conformance runner itself, on cases written here in the kit's layout (the kit's own
 * cases come from the server's side): it seeds the journal, applies the clock and reads the
 * bundle's bytes exactly; and the command-line verifier agrees with it on every case.
 */
final class ConformanceKitTest extends TestCase
{
    private string $root;
    private Fixtures $f;

    protected function setUp(): void
    {
        $this->root = TempDir::create('kit');
        $this->f = new Fixtures();
    }

    protected function tearDown(): void
    {
        TempDir::remove($this->root);
    }

    /**
     * @param array<string, mixed> $item
     * @param array<string, mixed> $journal
     */
    private function write(string $name, array $item, ?string $bundle, array $journal, string $verdict, string $reason, string $now = Fixtures::NOW, ?int $pad = null): void
    {
        $dir = $this->root . '/' . $name;
        mkdir($dir);
        $case = [
            'name' => $name, 'description' => 'written by the SDK\'s own test', 'now' => $now,
            'trusted_roots' => [$this->f->rootBase64()], 'install_id' => Fixtures::INSTALL_ID,
            'journal' => $journal + ['last_sequence' => 0, 'bundle_versions' => (object) [], 'command_ids' => []],
            'expected' => ['verdict' => $verdict, 'reason' => $reason],
        ];
        if ($pad !== null) {
            $case['pad_bundle_to'] = $pad;
        }
        file_put_contents($dir . '/case.json', json_encode($case, JSON_PRETTY_PRINT));
        file_put_contents($dir . '/command.json', Fixtures::json($item));
        if ($bundle !== null) {
            file_put_contents($dir . '/bundle.json', $bundle);
        }
    }

    private function writeCases(): void
    {
        $bundle = $this->f->bundle();
        $ok = $this->f->payload($bundle, ['sequence' => 4]);
        $this->write('accepted', $this->f->item($ok), $bundle, ['last_sequence' => 3, 'bundle_versions' => ['add_missing_column' => '1.0.3']], 'accept', 'ok');
        $this->write('replayed', $this->f->item($this->f->payload($bundle, ['sequence' => 3])), $bundle, ['last_sequence' => 3], 'refuse', 'replayed');
        $redelivered = $this->f->payload($bundle, ['sequence' => 2]);
        $this->write('redelivered', $this->f->item($redelivered), $bundle, ['last_sequence' => 3, 'command_ids' => [$redelivered['id']]], 'accept', 'ok');
        $recovered = $this->f->payload($bundle, ['sequence' => 7]);
        $this->write('recovered_from_inbox', $this->f->item($recovered), $bundle, ['last_sequence' => 7, 'command_ids' => [strtoupper($recovered['id'])]], 'accept', 'ok');
        $this->write('downgrade', $this->f->item($this->f->payload($bundle, ['sequence' => 9])), $bundle, ['bundle_versions' => ['add_missing_column' => '1.1.0']], 'refuse', 'downgrade');
        $this->write('expired', $this->f->item($this->f->payload($bundle)), $bundle, [], 'refuse', 'command_expired', '2026-12-02T11:00:00Z');
        $tampered = $this->f->item($this->f->payload($bundle));
        $tampered['signed']['payload'] = base64_encode(str_replace('DECIMAL(10,2)', 'TEXT', (string) base64_decode($tampered['signed']['payload'], true)));
        $this->write('tampered_operation', $tampered, $bundle, [], 'refuse', 'signature_invalid');
        // The bundle's bytes are compared raw: one trailing newline less is another file.
        $this->write('bundle_bytes', $this->f->item($this->f->payload($bundle)), rtrim($bundle, "\n"), [], 'refuse', 'bundle_hash_mismatch');
        // pad_bundle_to: the kit carries no 8 MiB file; the command names the padded bytes.
        $size = 8 * 1024 * 1024 + 1;
        $padded = str_pad($bundle, $size, ' ');
        $this->write('oversized', $this->f->item($this->f->payload($padded)), $bundle, [], 'refuse', 'bundle_too_large', Fixtures::NOW, $size);
    }

    public function testTheRunnerGivesEachCasesVerdict(): void
    {
        $this->writeCases();
        $dirs = ConformanceCase::find($this->root);
        self::assertCount(9, $dirs);
        foreach ($dirs as $dir) {
            $case = ConformanceCase::load($dir);
            self::assertSame(['verdict' => $case->expectedVerdict, 'reason' => $case->expectedReason], $case->run()->toArray(), $case->name);
        }
    }

    public function testTheCommandLineAgrees(): void
    {
        $this->writeCases();
        $rootFile = $this->root . '/root.pub';
        file_put_contents($rootFile, $this->f->rootBase64() . "\n");
        foreach (ConformanceCase::find($this->root) as $dir) {
            $case = ConformanceCase::load($dir);
            if ($case->lastSequence !== 0 || $case->bundleVersions !== [] || $case->commandIds !== [] || $case->padBundleTo !== null) {
                continue;   // the CLI starts from an empty journal, and reads files as they are
            }
            [$code, $out] = VerifyCliTest::runCli(['--trusted-root', $rootFile, '--install-id', $case->installId, '--now', $case->now, $dir . '/command.json', $dir . '/bundle.json']);
            self::assertSame(json_encode(['verdict' => $case->expectedVerdict, 'reason' => $case->expectedReason]) . "\n", $out, $case->name);
            self::assertSame($case->expectedVerdict === 'accept' ? 0 : 1, $code);
        }
    }
}
