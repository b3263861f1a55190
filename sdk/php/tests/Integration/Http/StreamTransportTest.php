<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Http;

use Autoheal\Sdk\Http\CurlTransport;
use Autoheal\Sdk\Http\StreamTransport;
use Autoheal\Sdk\Http\Transport;
use Autoheal\Sdk\Http\TransportException;
use Autoheal\Sdk\Http\TransportOptions;
use Autoheal\Sdk\Tests\Support\BackgroundProcess;
use Autoheal\Sdk\Tests\Support\FakeServer;
use Autoheal\Sdk\Tests\Support\Fixtures;
use PHPUnit\Framework\TestCase;

/** The real transports against a real HTTP server (php -S). */
final class StreamTransportTest extends TestCase
{
    private FakeServer $server;

    protected function setUp(): void
    {
        $this->server = new FakeServer(Fixtures::INSTALL_ID);
    }

    protected function tearDown(): void
    {
        $this->server->stop();
    }

    /**
     * CurlTransport is tested where ext-curl is installed (it is optional: no case is listed,
     * rather than skipped, without it, so a CI run without php-curl shows no skip).
     *
     * @return array<string, array{callable(TransportOptions): Transport}>
     */
    public function transports(): array
    {
        $transports = ['stream' => [static fn (TransportOptions $o): Transport => new StreamTransport($o)]];
        if (CurlTransport::isAvailable()) {
            $transports['curl'] = [static fn (TransportOptions $o): Transport => new CurlTransport($o)];
        }
        return $transports;
    }

    /** @dataProvider transports */
    public function testAnswersEveryStatusWithHeadersAndBody(callable $make): void
    {
        $t = $make(new TransportOptions());
        $auth = ['Authorization' => 'Bearer ' . FakeServer::KEY];
        $ok = $t->request('POST', $this->server->url() . '/api/v1/plugins/heartbeat', $auth + ['Content-Type' => 'application/json'], '{"cms":"generic","plugin_version":"1.0.0"}');
        self::assertSame(200, $ok->status());
        self::assertSame('application/json', $ok->header('Content-Type'));
        self::assertStringContainsString(Fixtures::INSTALL_ID, $ok->body());

        $missing = $t->request('GET', $this->server->url() . '/api/v1/plugins/autoheal/bundles/x/1.0.0', $auth, null);
        self::assertSame(404, $missing->status());
        self::assertStringContainsString('not_found', $missing->body());

        $this->server->serveBundle('x', '1.0.0', "\x00\x01binary\xff");
        $bytes = $t->request('GET', $this->server->url() . '/api/v1/plugins/autoheal/bundles/x/1.0.0', $auth, null);
        self::assertSame("\x00\x01binary\xff", $bytes->body(), 'bytes exactly as served');
        self::assertSame('"' . hash('sha256', "\x00\x01binary\xff") . '"', $bytes->header('etag'));
    }

    /** @dataProvider transports */
    public function testRedirectsAreNotFollowed(callable $make): void
    {
        $r = $make(new TransportOptions())->request('GET', $this->server->url() . '/redirect', [], null);
        self::assertSame(302, $r->status());
        self::assertSame('/api/v1/plugins/heartbeat', $r->header('location'));
    }

    /** @dataProvider transports */
    public function testAnAnswerOverTheLimitIsRefused(callable $make): void
    {
        $this->server->serveBundle('big', '1.0.0', str_repeat('a', 5000));
        $this->expectException(TransportException::class);
        $this->expectExceptionMessage('larger than 4096');
        $make(new TransportOptions(5, 5, 4096))->request('GET', $this->server->url() . '/api/v1/plugins/autoheal/bundles/big/1.0.0', ['Authorization' => 'Bearer ' . FakeServer::KEY], null);
    }

    /** @dataProvider transports */
    public function testNoServerIsATransportException(callable $make): void
    {
        $port = BackgroundProcess::freePort();
        $this->expectException(TransportException::class);
        $make(new TransportOptions(2, 2))->request('GET', 'http://127.0.0.1:' . $port . '/x', [], null);
    }
}
