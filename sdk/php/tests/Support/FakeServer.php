<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Support;

/** Runs fake-server/router.php under `php -S` on a free port, with a state file to script it. */
final class FakeServer
{
    public const KEY = 'ahm_fake_merchant_key';

    private string $dir;
    private string $stateFile;
    private BackgroundProcess $process;
    private int $port;

    public function __construct(string $installationId)
    {
        $this->dir = TempDir::create('fake-server');
        $this->stateFile = $this->dir . '/state.json';
        $this->write([
            'key' => self::KEY,
            'installation_id' => $installationId,
            'toggles' => ['block_plugin' => false, 'enable_debug' => false, 'force_update' => false, 'rate_limit' => null],
            'notices' => [],
            'queue' => [],
            'handed_out' => [],
            'bundles' => (object) [],
            'acks' => (object) [],
            'failures' => [],
            'requests' => [],
            'heartbeats' => [],
            'events' => [],
            'interop' => [],
            'notice_acks' => [],
        ]);
        $this->port = BackgroundProcess::freePort();
        $env = ['FAKE_AUTOHEAL_STATE' => $this->stateFile, 'PATH' => (string) getenv('PATH')];
        $this->process = new BackgroundProcess([PHP_BINARY, '-S', '127.0.0.1:' . $this->port, __DIR__ . '/fake-server/router.php'], $this->dir, $this->dir . '/server.log', $env);
        $this->process->waitForPort($this->port);
    }

    public function url(): string
    {
        return 'http://127.0.0.1:' . $this->port;
    }

    /** @return array<string, mixed> */
    public function state(): array
    {
        return json_decode((string) file_get_contents($this->stateFile), true);
    }

    /** @param callable(array<string, mixed>): array<string, mixed> $change */
    public function update(callable $change): void
    {
        $lock = fopen($this->stateFile . '.lock', 'c');
        flock($lock, LOCK_EX);
        try {
            $this->write($change($this->state()));
        } finally {
            flock($lock, LOCK_UN);
            fclose($lock);
        }
    }

    /** Queues poll items (each as its JSON) for the next poll. */
    public function queue(string ...$items): void
    {
        $this->update(static function (array $s) use ($items): array {
            $s['queue'] = array_merge($s['queue'], $items);
            return $s;
        });
    }

    public function serveBundle(string $name, string $version, string $bytes): void
    {
        $this->update(static function (array $s) use ($name, $version, $bytes): array {
            $s['bundles'][$name . '/' . $version] = base64_encode($bytes);
            return $s;
        });
    }

    /** The next request starting with "$match" ("POST /api/…") is answered $status. */
    public function fail(string $match, int $status, array $headers = [], int $times = 1): void
    {
        $this->update(static function (array $s) use ($match, $status, $headers, $times): array {
            for ($i = 0; $i < $times; $i++) {
                $s['failures'][] = ['match' => $match, 'status' => $status, 'headers' => (object) $headers];
            }
            return $s;
        });
    }

    /** @return array<string, mixed>|null */
    public function ack(string $commandId): ?array
    {
        return $this->state()['acks'][$commandId] ?? null;
    }

    public function log(): string
    {
        return $this->process->output();
    }

    public function stop(): void
    {
        $this->process->stop();
        TempDir::remove($this->dir);
    }

    /** @param array<string, mixed> $state */
    private function write(array $state): void
    {
        $tmp = $this->stateFile . '.tmp';
        file_put_contents($tmp, json_encode($state, JSON_UNESCAPED_SLASHES | JSON_PRETTY_PRINT));
        rename($tmp, $this->stateFile);
    }
}
