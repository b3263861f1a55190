<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Http;

use Autoheal\Sdk\Http\TransportException;
use Autoheal\Sdk\Http\TransportOptions;
use Autoheal\Sdk\Http\WordPressTransport;
use PHPUnit\Framework\TestCase;

/** Against the stub wp_remote_* functions of tests/Support/wordpress-stubs.php. */
final class WordPressTransportTest extends TestCase
{
    protected function setUp(): void
    {
        \WordPressStub::reset();
    }

    public function testPostGoesThroughWpRemotePost(): void
    {
        \WordPressStub::$responses[] = ['response' => ['code' => 201], 'headers' => ['Content-Type' => 'application/json', 'X-Multi' => ['a', 'b']], 'body' => '{"ok":1}'];
        $r = (new WordPressTransport(new TransportOptions(5, 12)))->request('POST', 'https://api.example.test/x', ['Authorization' => 'Bearer k'], '{}');
        self::assertSame(201, $r->status());
        self::assertSame('{"ok":1}', $r->body());
        self::assertSame('application/json', $r->header('content-type'));
        self::assertSame('a, b', $r->header('x-multi'));
        $call = \WordPressStub::$calls[0];
        self::assertSame('wp_remote_post', $call['function']);
        self::assertSame('POST', $call['args']['method']);
        self::assertSame('{}', $call['args']['body']);
        self::assertSame(['Authorization' => 'Bearer k'], $call['args']['headers']);
        self::assertSame(0, $call['args']['redirection'], 'redirects are never followed');
        self::assertSame(12.0, $call['args']['timeout']);
        self::assertTrue($call['args']['sslverify']);
    }

    public function testGetAndOtherMethods(): void
    {
        \WordPressStub::$responses[] = ['response' => ['code' => 200], 'headers' => new \ArrayIterator(['ETag' => '"abc"']), 'body' => 'x'];
        \WordPressStub::$responses[] = ['response' => ['code' => 204], 'headers' => [], 'body' => ''];
        $t = new WordPressTransport();
        self::assertSame('"abc"', $t->request('GET', 'https://h/x', [], null)->header('etag'));
        $t->request('DELETE', 'https://h/x', [], null);
        self::assertSame('wp_remote_get', \WordPressStub::$calls[0]['function']);
        self::assertArrayNotHasKey('body', \WordPressStub::$calls[0]['args']);
        self::assertSame('wp_remote_request', \WordPressStub::$calls[1]['function']);
    }

    public function testWpErrorIsATransportException(): void
    {
        \WordPressStub::$responses[] = new \WP_Error('http_request_failed', 'cURL error 7: Failed to connect');
        $this->expectException(TransportException::class);
        $this->expectExceptionMessage('cURL error 7');
        (new WordPressTransport())->request('GET', 'https://h/x', [], null);
    }

    public function testAnAnswerCutAtTheLimitIsRefused(): void
    {
        \WordPressStub::$responses[] = ['response' => ['code' => 200], 'headers' => [], 'body' => str_repeat('a', 11)];
        try {
            (new WordPressTransport(new TransportOptions(1, 1, 10)))->request('GET', 'https://h/x', [], null);
            self::fail('accepted a cut answer');
        } catch (TransportException $e) {
            self::assertSame(11, \WordPressStub::$calls[0]['args']['limit_response_size']);
        }
    }

    public function testRefusesHeaderInjectionAndOtherSchemes(): void
    {
        $t = new WordPressTransport();
        foreach ([['GET', 'file:///etc/passwd', []], ['GET', 'https://h/', ['X' => "a\r\nB: c"]], ['get', 'https://h/', []]] as [$m, $u, $h]) {
            try {
                $t->request($m, $u, $h, null);
                self::fail('accepted ' . $u);
            } catch (\InvalidArgumentException $e) {
                self::assertSame([], \WordPressStub::$calls);
            }
        }
    }
}
