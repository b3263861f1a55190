<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Heartbeat;

use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Database\TableSelection;
use Autoheal\Sdk\Events\InteropEvents;
use Autoheal\Sdk\Events\TelemetryEvents;
use Autoheal\Sdk\Heartbeat\Heartbeat;
use Autoheal\Sdk\Heartbeat\PluginInfo;
use Autoheal\Sdk\Heartbeat\StateCollector;
use Autoheal\Sdk\Http\ApiError;
use Autoheal\Sdk\Http\Client;
use Autoheal\Sdk\Http\ProtocolException;
use Autoheal\Sdk\Http\StreamTransport;
use Autoheal\Sdk\Journal\PdoJournal;
use Autoheal\Sdk\Tests\Support\FakeServer;
use Autoheal\Sdk\Tests\Support\Fixtures;
use Autoheal\Sdk\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

/** Heartbeats and events over HTTP, against the fake server. */
final class HeartbeatTest extends TestCase
{
    private FakeServer $server;
    private string $dir;

    protected function setUp(): void
    {
        $this->server = new FakeServer(Fixtures::INSTALL_ID);
        $this->dir = TempDir::create('heartbeat');
    }

    protected function tearDown(): void
    {
        $this->server->stop();
        TempDir::remove($this->dir);
    }

    private function client(string $key = FakeServer::KEY): Client
    {
        return new Client($this->server->url(), $key, new StreamTransport());
    }

    public function testTheHeartbeatBodyAndItsAnswer(): void
    {
        $pdo = Database::connect('sqlite:' . $this->dir . '/shop.db', null, null);
        $pdo->exec('CREATE TABLE wp_molam_orders (id INT)');
        $journal = new PdoJournal($pdo);
        $this->server->update(static function (array $s): array {
            $s['toggles'] = ['block_plugin' => false, 'enable_debug' => true, 'force_update' => false, 'rate_limit' => 60];
            $s['notices'] = [['id' => 'n1', 'priority' => 'high', 'subject' => 'Upgrade', 'current_version' => '1.3.5', 'target_version' => '2.0.0', 'security' => true, 'created_at' => '2026-12-01T00:00:00Z']];
            return $s;
        });
        $heartbeat = new Heartbeat(
            $this->client(),
            new PluginInfo('woocommerce', '1.3.5', 'https://shop.example', 'staging', '6.4'),
            new StateCollector($pdo, TableSelection::prefixed('wp_molam_'), null),
            $journal,
            static fn (): float => 0.5
        );
        $result = $heartbeat->send();
        self::assertSame(Fixtures::INSTALL_ID, $result->installationId());
        self::assertTrue($result->toggles()->enableDebug());
        self::assertSame(60, $result->toggles()->rateLimit());
        self::assertTrue($result->notices()[0]->isSecurity());
        self::assertSame(['autoheal.auto_apply' => true], $result->flags());
        self::assertSame(Fixtures::INSTALL_ID, $journal->installationId(), 'remembered for the next process');
        self::assertSame(Fixtures::INSTALL_ID, (new Heartbeat($this->client(), new PluginInfo('generic', '1.0.0', ''), null, $journal))->installationId());

        $sent = $this->server->state()['heartbeats'][0];
        self::assertSame('woocommerce', $sent['cms']);
        self::assertSame('1.3.5', $sent['plugin_version']);
        self::assertSame('php', $sent['sdk_language']);
        self::assertSame('staging', $sent['environment']);
        self::assertSame('6.4', $sent['wordpress_version']);
        self::assertSame(0.5, $sent['errors_last_hour']);
        self::assertSame(PHP_VERSION, $sent['php_version']);
        self::assertSame(['wp_molam_orders' => ['id' => 'INT']], $sent['state']['tables']);
        self::assertArrayHasKey('memory_limit', $sent['server_info']);
        self::assertSame('application/json', $this->server->state()['requests'][0]['content_type']);
    }

    public function testAWrongKeyIsATypedError(): void
    {
        try {
            (new Heartbeat($this->client('ahm_wrong'), new PluginInfo('generic', '1.0.0', '')))->send();
            self::fail('no error');
        } catch (ApiError $e) {
            self::assertSame(401, $e->status());
            self::assertSame('unauthorized', $e->errorCode());
            self::assertStringNotContainsString('ahm_wrong', $e->getMessage());
        }
    }

    public function testAnAnswerOfAnotherShapeIsAProtocolError(): void
    {
        $this->server->update(static function (array $s): array {
            $s['toggles'] = ['block_plugin' => 'no'];
            return $s;
        });
        $this->expectException(ProtocolException::class);
        (new Heartbeat($this->client(), new PluginInfo('generic', '1.0.0', '')))->send();
    }

    public function testTelemetryAndInteropEvents(): void
    {
        $events = new TelemetryEvents($this->client(), new PluginInfo('woocommerce', '1.3.5', 'https://shop.example'));
        $r = $events->paymentFailed('card declined', ['order_id' => 42]);
        self::assertSame('ev-1', $r->eventId());
        self::assertSame(Fixtures::INSTALL_ID, $r->installationId());
        self::assertFalse($r->isBlocked());
        $events->error(new \RuntimeException('Unknown column \'merchant_fee\' in field list'));
        $sent = $this->server->state()['events'];
        self::assertSame(['cms' => 'woocommerce', 'event_type' => 'payment_failed', 'event_data' => ['order_id' => 42], 'site_url' => 'https://shop.example', 'message' => 'card declined'], $sent[0]);
        self::assertSame('error', $sent[1]['event_type']);
        self::assertStringContainsString('merchant_fee', $sent[1]['message']);

        $interop = new InteropEvents($this->client());
        $ok = $interop->send(Fixtures::INSTALL_ID, 'woocommerce_checkout_order_processed', ['order_id' => 7], 'delivery-1');
        self::assertTrue($ok->isNormalized());
        self::assertSame(['type' => 'checkout.created'], $ok->normalized());
        $failed = $interop->send(Fixtures::INSTALL_ID, 'unknown_event', []);
        self::assertFalse($failed->isNormalized());
        self::assertSame('unmapped', $failed->errorCode());
        self::assertSame(['plugin_id' => Fixtures::INSTALL_ID, 'event_type' => 'woocommerce_checkout_order_processed', 'payload' => ['order_id' => 7], 'source_event_id' => 'delivery-1'], $this->server->state()['interop'][0]);
    }

    public function testTelemetryIsNotRetriedOn500ButHeartbeatsAre(): void
    {
        $this->server->fail('POST /api/v1/plugins/event', 500);
        $events = new TelemetryEvents($this->client(), new PluginInfo('generic', '1.0.0', ''));
        try {
            $events->send('info');
            self::fail('no error');
        } catch (ApiError $e) {
            self::assertSame(500, $e->status());
        }
        $this->server->fail('POST /api/v1/plugins/heartbeat', 500);
        $client = new Client($this->server->url(), FakeServer::KEY, new StreamTransport(), new \Autoheal\Sdk\Http\RetryPolicy(3, 0.01, 0.05));
        self::assertSame(Fixtures::INSTALL_ID, (new Heartbeat($client, new PluginInfo('generic', '1.0.0', '')))->send()->installationId());
    }
}
