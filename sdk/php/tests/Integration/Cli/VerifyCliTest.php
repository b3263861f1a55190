<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Cli;

use Autoheal\Sdk\Tests\Support\Fixtures;
use Autoheal\Sdk\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

/** bin/autoheal-verify as a program: its one line of output and its exit status. */
final class VerifyCliTest extends TestCase
{
    private string $dir;
    private Fixtures $f;

    protected function setUp(): void
    {
        $this->dir = TempDir::create('cli');
        $this->f = new Fixtures();
        file_put_contents($this->dir . '/root.pub', $this->f->rootBase64() . "\n");
    }

    protected function tearDown(): void
    {
        TempDir::remove($this->dir);
    }

    /**
     * @param list<string> $args
     * @return array{int, string, string} exit status, stdout, stderr
     */
    public static function runCli(array $args): array
    {
        $command = array_merge([PHP_BINARY, dirname(__DIR__, 3) . '/bin/autoheal-verify'], $args);
        $process = proc_open($command, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
        $out = (string) stream_get_contents($pipes[1]);
        $err = (string) stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        return [proc_close($process), $out, $err];
    }

    /** @return array{string, string} command and bundle files */
    private function files(array $payload = [], ?callable $tamper = null): array
    {
        $bundle = $this->f->bundle();
        $item = $this->f->item($this->f->payload($bundle, $payload));
        if ($tamper !== null) {
            $item = $tamper($item);
        }
        $name = $this->dir . '/' . bin2hex(random_bytes(4));
        file_put_contents($name . '.command.json', Fixtures::json($item));
        file_put_contents($name . '.bundle.json', $bundle);
        return [$name . '.command.json', $name . '.bundle.json'];
    }

    /** @return list<string> */
    private function base(): array
    {
        return ['--trusted-root', $this->dir . '/root.pub', '--install-id', Fixtures::INSTALL_ID, '--now', Fixtures::NOW];
    }

    public function testAcceptPrintsOneLineAndExitsZero(): void
    {
        [$command, $bundle] = $this->files();
        [$code, $out, $err] = self::runCli(array_merge($this->base(), [$command, $bundle]));
        self::assertSame(0, $code, $err);
        self::assertSame("{\"verdict\":\"accept\",\"reason\":\"ok\"}\n", $out);
    }

    public function testRefusalPrintsTheReasonAndExitsOne(): void
    {
        [$command, $bundle] = $this->files([], static function (array $item): array {
            $item['signed']['payload'] = base64_encode(str_replace('wp_molam_orders', 'wp_users', (string) base64_decode($item['signed']['payload'], true)));
            return $item;
        });
        [$code, $out, $err] = self::runCli(array_merge($this->base(), [$command, $bundle]));
        self::assertSame(1, $code);
        self::assertSame("{\"verdict\":\"refuse\",\"reason\":\"signature_invalid\"}\n", $out);
        self::assertStringContainsString('does not verify', $err);
    }

    public function testTheStateDirectoryRemembersAcceptedCommands(): void
    {
        [$command, $bundle] = $this->files();
        $args = array_merge($this->base(), ['--state-dir', $this->dir . '/state', $command, $bundle]);
        self::assertSame(0, self::runCli($args)[0]);
        [$code, $out] = self::runCli($args);
        self::assertSame(1, $code);
        self::assertSame("{\"verdict\":\"refuse\",\"reason\":\"replayed\"}\n", $out);
        $journal = json_decode((string) file_get_contents($this->dir . '/state/journal.json'), true);
        self::assertSame('1.0.3', $journal['bundle_versions']['add_missing_column']);
    }

    public function testNowDecidesExpiry(): void
    {
        [$command, $bundle] = $this->files();
        $args = ['--trusted-root', $this->dir . '/root.pub', '--install-id', Fixtures::INSTALL_ID, '--now=2026-12-02T11:00:00Z', $command, $bundle];
        self::assertSame("{\"verdict\":\"refuse\",\"reason\":\"command_expired\"}\n", self::runCli($args)[1]);
    }

    public function testWithoutABundleTheCommandAloneIsChecked(): void
    {
        [$command] = $this->files();
        [$code, $out, $err] = self::runCli(array_merge($this->base(), [$command]));
        self::assertSame(0, $code);
        self::assertSame("{\"verdict\":\"accept\",\"reason\":\"ok\"}\n", $out);
        self::assertStringContainsString('checks 13-18 not run', $err);
    }

    public function testSeveralRootsAndAWrongInstall(): void
    {
        $other = $this->dir . '/other.pub';
        file_put_contents($other, base64_encode(Fixtures::keyPair()['public']) . "\n");
        [$command, $bundle] = $this->files();
        self::assertSame(0, self::runCli(['--trusted-root', $other, '--trusted-root', $this->dir . '/root.pub', '--install-id', Fixtures::INSTALL_ID, '--now', Fixtures::NOW, $command, $bundle])[0]);
        self::assertSame("{\"verdict\":\"refuse\",\"reason\":\"wrong_install\"}\n", self::runCli(['--trusted-root', $this->dir . '/root.pub', '--install-id', 'other', '--now', Fixtures::NOW, $command, $bundle])[1]);
    }

    public function testACommandFileThatIsNotJsonIsARefusal(): void
    {
        file_put_contents($this->dir . '/bad.json', '{');
        [$code, $out] = self::runCli(array_merge($this->base(), [$this->dir . '/bad.json']));
        self::assertSame(1, $code);
        self::assertSame("{\"verdict\":\"refuse\",\"reason\":\"malformed\"}\n", $out);
    }

    /** @return array<string, array{list<string>}> */
    public function usageErrors(): array
    {
        return [
            'nothing' => [[]],
            'no root' => [['--install-id', 'x', 'c.json']],
            'no install id' => [['--trusted-root', '{root}', 'c.json']],
            'unknown option' => [['--trusted-root', '{root}', '--install-id', 'x', '--fast', 'c.json']],
            'three files' => [['--trusted-root', '{root}', '--install-id', 'x', 'a', 'b', 'c']],
            'bad now' => [['--trusted-root', '{root}', '--install-id', 'x', '--now', 'yesterday', 'c.json']],
            'unreadable command' => [['--trusted-root', '{root}', '--install-id', 'x', '/nonexistent/c.json']],
            'root not base64' => [['--trusted-root', '{bad}', '--install-id', 'x', 'c.json']],
            'option without value' => [['--trusted-root']],
            'install id twice' => [['--trusted-root', '{root}', '--install-id', 'x', '--install-id', 'y', 'c.json']],
        ];
    }

    /**
     * @dataProvider usageErrors
     * @param list<string> $args
     */
    public function testUsageErrorsExitTwo(array $args): void
    {
        file_put_contents($this->dir . '/bad.pub', "not a key\n");
        $args = array_map(fn (string $a): string => strtr($a, ['{root}' => $this->dir . '/root.pub', '{bad}' => $this->dir . '/bad.pub']), $args);
        [$code, $out, $err] = self::runCli($args);
        self::assertSame(2, $code, $out . $err);
        self::assertSame('', $out);
        self::assertNotSame('', $err);
    }

    public function testHelp(): void
    {
        [$code, $out] = self::runCli(['--help']);
        self::assertSame(0, $code);
        self::assertStringContainsString('usage: autoheal-verify', $out);
        self::assertTrue(is_executable(dirname(__DIR__, 3) . '/bin/autoheal-verify'));
    }
}
