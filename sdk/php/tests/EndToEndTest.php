<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests;

use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Http\StreamTransport;
use Autoheal\Sdk\Tests\Integration\Agent\ExampleTest;
use Autoheal\Sdk\Tests\Support\BackgroundProcess;
use Autoheal\Sdk\Tests\Support\MariaDb;
use Autoheal\Sdk\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

/**
 * The healing loop end to end, with the real server: AUTOHEAL_BIN (the `autoheal` binary)
 * serves from the repository root (its ./rules and ./patches, the development root key),
 * the example plugin's runner plays the shop, on MariaDB and on SQLite. Skipped unless
 * AUTOHEAL_BIN is set.
 *
 * Per shop: heartbeat with state → Sira's detection → the runner applies the signed
 * command (ALTER TABLE) and acks → log `applied` → Ops roll back → the runner drops the
 * column → log `rolled_back`; a command altered in transit (a proxy) is refused and its
 * log is `refused`; an ALTER the database refuses leaves the tables as they were and the
 * log `failed`.
 */
final class EndToEndTest extends TestCase
{
    private const REPO = __DIR__ . '/../../..';

    private static ?BackgroundProcess $server = null;
    private static ?BackgroundProcess $proxy = null;
    private static string $dir = '';
    private static string $url = '';
    private static string $proxyUrl = '';
    /** @var array{merchant: string, ops: string, sira: string} */
    private static array $tokens = ['merchant' => '', 'ops' => '', 'sira' => ''];

    public static function setUpBeforeClass(): void
    {
        $bin = getenv('AUTOHEAL_BIN');
        if ($bin === false || $bin === '') {
            return;
        }
        self::$dir = TempDir::create('e2e');
        $database = self::databaseArgs($bin, self::$dir . '/autoheal.db');
        $port = BackgroundProcess::freePort();
        self::$url = 'http://127.0.0.1:' . $port;
        // Each shop rolls back one patch and fails another on purpose: the rule's breaker would
        // suspend its auto-apply half-way (it is not what this test is about).
        $serve = ['serve', '--listen', '127.0.0.1:' . $port, '--breaker-min-failures', '1000'];
        self::$server = new BackgroundProcess(array_merge([$bin], $database, $serve), realpath(self::REPO), self::$dir . '/server.log');
        self::$server->waitForPort($port, 60);
        self::$tokens['merchant'] = self::cli($bin, $database, ['merchant', 'create', '--name', 'E2E Shop', '--email', 'e2e@example.com'])['api_key'];
        self::$tokens['ops'] = self::cli($bin, $database, ['ops-agent', 'create', '--email', 'ops-e2e@example.com', '--role', 'operator'])['token'];
        self::$tokens['sira'] = self::cli($bin, $database, ['sira-token', 'create', '--name', 'sira'])['token'];
        $proxyPort = BackgroundProcess::freePort();
        self::$proxyUrl = 'http://127.0.0.1:' . $proxyPort;
        self::$proxy = new BackgroundProcess([PHP_BINARY, '-S', '127.0.0.1:' . $proxyPort, __DIR__ . '/Support/tamper-proxy/router.php'], self::$dir, self::$dir . '/proxy.log', ['UPSTREAM' => self::$url, 'PATH' => (string) getenv('PATH')]);
        self::$proxy->waitForPort($proxyPort);
    }

    public static function tearDownAfterClass(): void
    {
        foreach ([self::$proxy, self::$server] as $process) {
            if ($process !== null) {
                $process->stop();
            }
        }
        self::$proxy = self::$server = null;
        if (self::$dir !== '') {
            TempDir::remove(self::$dir);
        }
    }

    protected function setUp(): void
    {
        if (self::$server === null) {
            self::markTestSkipped('set AUTOHEAL_BIN to the autoheal binary to run the end-to-end test');
        }
    }

    /**
     * The store flag as this build spells it (`--database-url sqlite://PATH` today, global;
     * a `--database PATH` if a later build has one), read from its --help.
     *
     * @return list<string>
     */
    private static function databaseArgs(string $bin, string $file): array
    {
        $help = self::capture([$bin, 'serve', '--help'])[1] . self::capture([$bin, '--help'])[1];
        if (strpos($help, '--database-url') !== false) {
            return ['--database-url', 'sqlite://' . $file];
        }
        if (preg_match('/--database[\s=]/', $help) === 1) {
            return ['--database', $file];
        }
        throw new \RuntimeException('cannot tell the database flag from `autoheal --help`');
    }

    /**
     * @param list<string> $command
     * @return array{int, string, string}
     */
    private static function capture(array $command): array
    {
        $process = proc_open($command, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, realpath(self::REPO));
        $out = (string) stream_get_contents($pipes[1]);
        $err = (string) stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        return [proc_close($process), $out, $err];
    }

    /**
     * @param list<string> $database
     * @param list<string> $args
     * @return array<string, mixed>
     */
    private static function cli(string $bin, array $database, array $args): array
    {
        [$code, $out, $err] = self::capture(array_merge([$bin], $database, $args));
        $json = json_decode(trim($out), true);
        if ($code !== 0 || !is_array($json)) {
            throw new \RuntimeException(implode(' ', $args) . ' failed: ' . $out . $err);
        }
        return $json;
    }

    /**
     * @param array<string, mixed>|null $body
     * @return array{int, mixed}
     */
    private static function http(string $method, string $path, string $token, ?array $body = null): array
    {
        $headers = ['Authorization' => 'Bearer ' . $token, 'Accept' => 'application/json'];
        if ($body !== null) {
            $headers['Content-Type'] = 'application/json';
        }
        $r = (new StreamTransport())->request($method, self::$url . $path, $headers, $body === null ? null : (string) json_encode($body));
        return [$r->status(), json_decode($r->body(), true)];
    }

    /** @return array<string, mixed> the runner's JSON line */
    private function tick(string $dsn, string $site, string $state, bool $throughProxy = false): array
    {
        $env = [
            'AUTOHEAL_URL' => $throughProxy ? self::$proxyUrl : self::$url,
            'AUTOHEAL_KEY' => self::$tokens['merchant'],
            'AUTOHEAL_DSN' => $dsn,
            'AUTOHEAL_DB_USER' => strpos($dsn, 'mysql:') === 0 ? MariaDb::user() : '',
            'AUTOHEAL_DB_PASSWORD' => strpos($dsn, 'mysql:') === 0 ? MariaDb::password() : '',
            'AUTOHEAL_TRUSTED_ROOT' => realpath(self::REPO) . '/patches/dev-key/autoheal.pub',
            'AUTOHEAL_STATE_DIR' => $state,
            'AUTOHEAL_SITE_URL' => $site,
            'AUTOHEAL_TABLES' => 'wp_molam_*',
        ];
        [$code, $out, $err] = ExampleTest::runExample($env);
        $line = json_decode($out, true);
        self::assertIsArray($line, 'runner output: ' . $out . $err . "\nserver: " . self::$server->output());
        self::assertSame([], $line['errors'], $err);
        self::assertSame(0, $code);
        return $line;
    }

    /** @return array<string, mixed> the log created */
    private function detect(string $installId, string $column, string $columnType): array
    {
        [$status, $answer] = self::http('POST', '/api/v1/plugins/autoheal', self::$tokens['sira'], [
            'plugin_id' => $installId,
            'detected_issue' => "Fatal error: Unknown column '" . $column . "' in field list",
            'issue_severity' => 'high',
            'patch_type' => 'database_patch',
            'sira_confidence' => 92.5,
            'proposed_patch' => ['type' => 'database_patch', 'action' => 'add_missing_column', 'table' => 'wp_molam_orders', 'column' => $column, 'column_type' => $columnType],
        ]);
        self::assertSame(201, $status, json_encode($answer));
        self::assertSame('applied', $answer['status'], json_encode($answer));
        return $answer['log'];
    }

    private function logStatus(string $logId): string
    {
        [$status, $log] = self::http('GET', '/api/v1/plugins/autoheal/' . rawurlencode($logId), self::$tokens['ops']);
        self::assertSame(200, $status, json_encode($log));
        return (string) $log['status'];
    }

    /** @return array<string, string> */
    private static function columns(\PDO $shop): array
    {
        return Database::dialect($shop)->columns($shop, ['wp_molam_orders'])['wp_molam_orders'] ?? [];
    }

    /** @return array<string, array{callable(self): array{\PDO, string, callable}, string}> */
    public function shops(): array
    {
        return [
            'mariadb' => [static function (self $test): array {
                $db = MariaDb::create($test);
                return [$db->connect(), $db->dsn(), static fn () => $db->drop()];
            }, 'DECIMAL(70,2)'],
            'sqlite' => [static function (self $test): array {
                $file = self::$dir . '/shop-' . bin2hex(random_bytes(4)) . '.db';
                return [Database::connect('sqlite:' . $file, null, null), 'sqlite:' . $file, static function (): void {
                }];
            }, 'INT NOT NULL'],
        ];
    }

    /** @dataProvider shops */
    public function testTheHealingLoop(callable $open, string $refusedType): void
    {
        [$shop, $dsn, $drop] = $open($this);
        try {
            $shop->exec('CREATE TABLE wp_molam_orders (id BIGINT UNSIGNED, amount DECIMAL(10,2))');
            $shop->exec('INSERT INTO wp_molam_orders (id, amount) VALUES (1, 10.00)');
            $site = 'https://' . bin2hex(random_bytes(4)) . '.shop.example';
            $state = self::$dir . '/state-' . bin2hex(random_bytes(4));

            // Heartbeat with state: the snapshot the patch runs against.
            $first = $this->tick($dsn, $site, $state);
            $installId = (string) $first['installation_id'];
            self::assertNotSame('', $installId);
            self::assertSame([], $first['commands']);

            // Detection → applied by the plugin.
            $log = $this->detect($installId, 'merchant_fee', 'DECIMAL(10,2)');
            $applied = $this->tick($dsn, $site, $state);
            self::assertCount(1, $applied['commands'], json_encode($applied));
            self::assertSame(['accept', 'ok', true, 1, 'delivered'], [$applied['commands'][0]['verdict'], $applied['commands'][0]['reason'], $applied['commands'][0]['success'], $applied['commands'][0]['applied_operations'], $applied['commands'][0]['ack']]);
            self::assertArrayHasKey('merchant_fee', self::columns($shop));
            self::assertSame('applied', $this->logStatus((string) $log['id']));

            // Ops roll it back.
            [$status, $answer] = self::http('POST', '/api/v1/plugins/autoheal/' . rawurlencode((string) $log['id']) . '/rollback', self::$tokens['ops'], ['reason' => 'end-to-end test']);
            self::assertSame(200, $status, json_encode($answer));
            $rolledBack = $this->tick($dsn, $site, $state);
            self::assertSame(['accept', true, 'delivered'], [$rolledBack['commands'][0]['verdict'], $rolledBack['commands'][0]['success'], $rolledBack['commands'][0]['ack']]);
            self::assertArrayNotHasKey('merchant_fee', self::columns($shop));
            self::assertSame('rolled_back', $this->logStatus((string) $log['id']));

            // Altered in transit: refused, nothing applied.
            $tampered = $this->detect($installId, 'merchant_tax', 'DECIMAL(10,2)');
            $refused = $this->tick($dsn, $site, $state, true);
            self::assertSame(['refuse', 'signature_invalid', 'delivered'], [$refused['commands'][0]['verdict'], $refused['commands'][0]['reason'], $refused['commands'][0]['ack']]);
            self::assertArrayNotHasKey('merchant_tax', self::columns($shop));
            self::assertSame('refused', $this->logStatus((string) $tampered['id']));

            // An ALTER the database refuses: nothing in effect, the tables as they were.
            $before = self::columns($shop);
            $failing = $this->detect($installId, 'merchant_code', $refusedType);
            $failed = $this->tick($dsn, $site, $state);
            self::assertSame(['accept', false, 0, 'delivered'], [$failed['commands'][0]['verdict'], $failed['commands'][0]['success'], $failed['commands'][0]['applied_operations'], $failed['commands'][0]['ack']]);
            self::assertSame($before, self::columns($shop));
            self::assertSame('failed', $this->logStatus((string) $failing['id']));
        } finally {
            $shop = null;
            $drop();
        }
    }
}
