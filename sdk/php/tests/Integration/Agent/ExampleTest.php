<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Agent;

use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Tests\Support\FakeServer;
use Autoheal\Sdk\Tests\Support\Fixtures;
use Autoheal\Sdk\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

/** examples/woocommerce: the plain-PHP runner against the fake server, and the WordPress classes on stubs. */
final class ExampleTest extends TestCase
{
    private string $dir;

    protected function setUp(): void
    {
        $this->dir = TempDir::create('example');
        \WordPressStub::reset();
    }

    protected function tearDown(): void
    {
        TempDir::remove($this->dir);
    }

    /**
     * @param array<string, string> $env
     * @return array{int, string, string}
     */
    public static function runExample(array $env): array
    {
        $process = proc_open([PHP_BINARY, dirname(__DIR__, 3) . '/examples/woocommerce/run.php'], [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, null, $env + ['PATH' => (string) getenv('PATH')]);
        $out = (string) stream_get_contents($pipes[1]);
        $err = (string) stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        return [proc_close($process), $out, $err];
    }

    public function testTheRunnerTicksAndPrintsOneLine(): void
    {
        $f = new Fixtures();
        $server = new FakeServer(Fixtures::INSTALL_ID);
        try {
            $shop = Database::connect('sqlite:' . $this->dir . '/shop.db', null, null);
            $shop->exec('CREATE TABLE wp_molam_orders (id BIGINT UNSIGNED, amount DECIMAL(10,2))');
            file_put_contents($this->dir . '/root.pub', $f->rootBase64() . "\n");
            // Commands must be valid now: the runner uses the real clock.
            $bundle = $f->bundle();
            $now = time();
            $p = $f->payload($bundle, ['issued_at' => gmdate('Y-m-d\TH:i:s\Z', $now - 60), 'expires_at' => gmdate('Y-m-d\TH:i:s\Z', $now + 3600)]);
            $item = $f->item($p, null, $f->certificate(['not_before' => gmdate('Y-m-d\TH:i:s\Z', $now - 3600), 'not_after' => gmdate('Y-m-d\TH:i:s\Z', $now + 86400)]));
            $server->serveBundle('add_missing_column', '1.0.3', $bundle);
            $server->queue(Fixtures::json($item));
            $env = [
                'AUTOHEAL_URL' => $server->url(), 'AUTOHEAL_KEY' => FakeServer::KEY, 'AUTOHEAL_DSN' => 'sqlite:' . $this->dir . '/shop.db',
                'AUTOHEAL_TRUSTED_ROOT' => $this->dir . '/root.pub', 'AUTOHEAL_STATE_DIR' => $this->dir . '/state',
                'AUTOHEAL_SITE_URL' => 'https://shop.example', 'AUTOHEAL_TABLES' => 'wp_molam_*',
            ];
            [$code, $out, $err] = self::runExample($env);
            self::assertSame(0, $code, $out . $err);
            self::assertSame(1, substr_count($out, "\n"));
            self::assertSame([
                'installation_id' => Fixtures::INSTALL_ID,
                'commands' => [['id' => $p['id'], 'verdict' => 'accept', 'reason' => 'ok', 'success' => true, 'applied_operations' => 1, 'ack' => 'delivered']],
                'errors' => [],
            ], json_decode($out, true));
            self::assertSame(['id', 'amount', 'merchant_fee'], array_keys(Database::dialect($shop)->columns($shop, ['wp_molam_orders'])['wp_molam_orders']));
            self::assertSame(['wp_molam_orders' => ['id' => 'BIGINT UNSIGNED', 'amount' => 'DECIMAL(10,2)']], $server->state()['heartbeats'][0]['state']['tables']);
        } finally {
            $server->stop();
        }
    }

    public function testTheRunnerReportsConfigurationErrors(): void
    {
        [$code, $out, $err] = self::runExample(['AUTOHEAL_URL' => 'http://127.0.0.1:1']);
        self::assertSame(2, $code);
        self::assertSame('', $out);
        self::assertStringContainsString('AUTOHEAL_DSN is not set', $err);
    }

    public function testTheWordPressClassesOnStubs(): void
    {
        require_once dirname(__DIR__, 3) . '/examples/woocommerce/class-molam-heartbeat.php';
        require_once dirname(__DIR__, 3) . '/examples/woocommerce/class-molam-autoheal.php';
        $heartbeat = new \Molam_Heartbeat();
        self::assertSame(0.0, $heartbeat->error_rate());
        \WordPressStub::fire('molam_payment_success');
        \WordPressStub::fire('molam_payment_success');
        \WordPressStub::fire('molam_payment_success');
        \WordPressStub::fire('molam_payment_error');
        self::assertSame(25.0, $heartbeat->error_rate());

        new \Molam_AutoHeal(static function () {
            throw new \LogicException('the agent is built on first use only');
        }, $heartbeat);
        self::assertSame('molam_5min', \WordPressStub::$options['_cron']['molam_autoheal_tick']);
        \Molam_AutoHeal::queue_admin_notice('php_upgrade', 'warning', 'Upgrade PHP to 8.1', []);
        self::assertSame([['severity' => 'warning', 'message' => 'Upgrade PHP to 8.1']], get_option('molam_autoheal_admin_notices'));
    }
}
