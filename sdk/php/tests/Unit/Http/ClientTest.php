<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Http;

use Autoheal\Sdk\Http\ApiError;
use Autoheal\Sdk\Http\Client;
use Autoheal\Sdk\Http\Response;
use Autoheal\Sdk\Http\RetryPolicy;
use Autoheal\Sdk\Http\TransportException;
use Autoheal\Sdk\Support\JsonException;
use Autoheal\Sdk\Time\FixedClock;
use PHPUnit\Framework\TestCase;

final class ClientTest extends TestCase
{
    private const KEY = 'ahm_0123456789abcdef';

    /** @param list<Response|TransportException> $answers */
    private function client(array $answers, ?RetryPolicy $policy = null, ?InMemoryTransport &$transport = null, ?RecordingSleeper &$sleeper = null): Client
    {
        $transport = new InMemoryTransport($answers);
        $sleeper = new RecordingSleeper();
        return new Client('https://api.example.test/', self::KEY, $transport, $policy ?? new RetryPolicy(4, 0.5, 30.0, static fn (): float => 0.5), $sleeper, null, FixedClock::at('2026-12-02T10:00:00Z'));
    }

    private static function ok(string $body = '{"ok":true}'): Response
    {
        return new Response(200, ['Content-Type' => 'application/json'], $body);
    }

    public function testSendsTheKeyAndJson(): void
    {
        $client = $this->client([self::ok()], null, $t);
        $answer = $client->post('api/v1/plugins/heartbeat', ['cms' => 'woocommerce', 'state' => (object) []], true);
        self::assertTrue($answer->ok);
        self::assertSame('POST', $t->requests[0]['method']);
        self::assertSame('https://api.example.test/api/v1/plugins/heartbeat', $t->requests[0]['url']);
        self::assertSame('Bearer ' . self::KEY, $t->requests[0]['headers']['Authorization']);
        self::assertSame('application/json', $t->requests[0]['headers']['Content-Type']);
        self::assertSame('{"cms":"woocommerce","state":{}}', $t->requests[0]['body']);
    }

    public function testPathSegmentsAreEncoded(): void
    {
        self::assertSame('a/x%2F..%3Fy/b', Client::path('a/%s/b', 'x/..?y'));
    }

    public function testTypedErrorWithTheServerEnvelope(): void
    {
        $client = $this->client([new Response(422, [], '{"error":{"code":"invalid_field","message":"unknown variant","field":"cms"}}')]);
        try {
            $client->post('x', [], true);
            self::fail('no error');
        } catch (ApiError $e) {
            self::assertSame(422, $e->status());
            self::assertSame('invalid_field', $e->errorCode());
            self::assertSame('cms', $e->field());
            self::assertStringNotContainsString(self::KEY, $e->getMessage());
        }
    }

    public function testErrorWithoutTheEnvelope(): void
    {
        $client = $this->client([new Response(404, [], '<html>nope</html>')]);
        $this->expectException(ApiError::class);
        $this->expectExceptionMessage('http_404');
        $client->get('x');
    }

    public function testRetriesWith503ThenSucceeds(): void
    {
        $client = $this->client([new Response(503, [], ''), new Response(503, [], ''), self::ok()], null, $t, $s);
        self::assertTrue($client->get('x')->ok);
        self::assertCount(3, $t->requests);
        // Backoff 0.5 s then 1 s, "equal jitter" with the random source at 0.5: ¾ of each.
        self::assertSame([0.375, 0.75], $s->slept);
    }

    public function testRetryAfterSecondsIsHonoured(): void
    {
        $client = $this->client([new Response(429, ['Retry-After' => '7'], '{"error":{"code":"rate_limited","message":"slow down"}}'), self::ok()], null, $t, $s);
        $client->post('x', [], false);
        self::assertSame([7.0], $s->slept, '429 is retried even for a request that is not idempotent');
    }

    public function testRetryAfterHttpDateIsHonoured(): void
    {
        $client = $this->client([new Response(503, ['retry-after' => 'Wed, 02 Dec 2026 10:00:12 GMT'], ''), self::ok()], null, $t, $s);
        $client->get('x');
        self::assertSame([12.0], $s->slept);
    }

    public function testRetryAfterBeyondTheCapStopsRetrying(): void
    {
        $client = $this->client([new Response(429, ['Retry-After' => '3600'], '{"error":{"code":"quota_exceeded","message":"quota"}}')], null, $t, $s);
        try {
            $client->get('x');
            self::fail('retried');
        } catch (ApiError $e) {
            self::assertSame(3600.0, $e->retryAfter());
            self::assertSame('quota_exceeded', $e->errorCode());
        }
        self::assertSame([], $s->slept);
    }

    public function testGivesUpAfterMaxAttempts(): void
    {
        $client = $this->client(array_fill(0, 4, new Response(502, [], '')), null, $t, $s);
        try {
            $client->get('x');
            self::fail('no error');
        } catch (ApiError $e) {
            self::assertSame(502, $e->status());
        }
        self::assertCount(4, $t->requests);
        self::assertSame([0.375, 0.75, 1.5], $s->slept);
    }

    public function testBackoffIsCapped(): void
    {
        $policy = new RetryPolicy(10, 1.0, 5.0, static fn (): float => 0.999);
        self::assertEqualsWithDelta(5.0, $policy->delayBefore(8, null), 0.01);
        self::assertNull($policy->delayBefore(10, null));
        $jittered = new RetryPolicy(10, 1.0, 5.0);
        for ($i = 0; $i < 50; $i++) {
            $d = $jittered->delayBefore(3, null);
            self::assertGreaterThanOrEqual(2.0, $d);
            self::assertLessThanOrEqual(4.0, $d);
        }
    }

    public function testNetworkErrorsAreRetriedOnlyWhenIdempotent(): void
    {
        $client = $this->client([new TransportException('connection refused'), self::ok()], null, $t);
        self::assertTrue($client->get('x')->ok);
        self::assertCount(2, $t->requests);

        $once = $this->client([new TransportException('connection refused'), self::ok()], null, $t2);
        try {
            $once->post('event', [], false);
            self::fail('retried a request that is not idempotent');
        } catch (TransportException $e) {
            self::assertCount(1, $t2->requests);
        }
    }

    public function test500IsNotRetriedWhenNotIdempotent(): void
    {
        $client = $this->client([new Response(500, [], ''), self::ok()], null, $t);
        $this->expectException(ApiError::class);
        $client->post('event', [], false);
    }

    public function testFourHundredsAreNotRetried(): void
    {
        $client = $this->client([new Response(409, [], ''), self::ok()], null, $t);
        try {
            $client->post('ack', [], true);
        } catch (ApiError $e) {
            self::assertCount(1, $t->requests);
            return;
        }
        self::fail('no error');
    }

    public function testAnswerThatIsNotJson(): void
    {
        $client = $this->client([self::ok('<html>')]);
        $this->expectException(JsonException::class);
        $client->get('x');
    }

    public function testRetryAfterParsing(): void
    {
        $now = 1796205600;   // 2026-12-02T10:00:00Z
        self::assertSame(0.0, RetryPolicy::parseRetryAfter('0', $now));
        self::assertSame(120.0, RetryPolicy::parseRetryAfter(' 120 ', $now));
        self::assertSame(30.0, RetryPolicy::parseRetryAfter('Wednesday, 02-Dec-26 10:00:30 GMT', $now));
        self::assertSame(5.0, RetryPolicy::parseRetryAfter('Wed Dec  2 10:00:05 2026', $now));
        self::assertSame(0.0, RetryPolicy::parseRetryAfter('Wed, 02 Dec 2026 09:00:00 GMT', $now), 'a date in the past');
        self::assertNull(RetryPolicy::parseRetryAfter('soon', $now));
        self::assertNull(RetryPolicy::parseRetryAfter('-5', $now));
        self::assertNull(RetryPolicy::parseRetryAfter(null, $now));
    }

    public function testDumpsDoNotShowTheKey(): void
    {
        self::assertStringNotContainsString(self::KEY, print_r($this->client([]), true));
    }

    public function testRefusesBadConfiguration(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        new Client('ftp://x', self::KEY, new InMemoryTransport([]));
    }

    public function testRefusesAKeyWithWhitespaceWithoutShowingIt(): void
    {
        try {
            new Client('https://x', "ahm_secret\r\nX-Evil: 1", new InMemoryTransport([]));
            self::fail('accepted');
        } catch (\InvalidArgumentException $e) {
            self::assertStringNotContainsString('secret', $e->getMessage());
        }
    }
}
