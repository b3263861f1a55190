<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

use Autoheal\Sdk\Log\Logger;
use Autoheal\Sdk\Log\NullLogger;
use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Support\JsonException;
use Autoheal\Sdk\Time\Clock;
use Autoheal\Sdk\Time\SystemClock;
use Autoheal\Sdk\Version;

/**
 * The autoheal API over a Transport: base URL, the merchant key, JSON both ways, typed
 * errors (ApiError for an answered error, TransportException when nothing answered,
 * JsonException for an answer that is not JSON) and retries (RetryPolicy).
 */
final class Client
{
    private string $baseUrl;
    private string $merchantKey;
    private Transport $transport;
    private RetryPolicy $retry;
    private Sleeper $sleeper;
    private Clock $clock;
    private Logger $logger;

    public function __construct(
        string $baseUrl,
        #[\SensitiveParameter]
        string $merchantKey,
        Transport $transport,
        ?RetryPolicy $retry = null,
        ?Sleeper $sleeper = null,
        ?Logger $logger = null,
        ?Clock $clock = null
    ) {
        $baseUrl = rtrim($baseUrl, '/');
        if (preg_match('#^https?://[^/?\#\s]+(/[^?\#\s]*)?$#D', $baseUrl) !== 1) {
            throw new \InvalidArgumentException('base URL must be http(s)://host[:port][/path]');
        }
        if ($merchantKey === '' || preg_match('/[\s\0]/', $merchantKey) === 1) {
            // The key itself is never part of a message.
            throw new \InvalidArgumentException('merchant key must be a non-empty token without whitespace');
        }
        $this->baseUrl = $baseUrl;
        $this->merchantKey = $merchantKey;
        $this->transport = $transport;
        $this->retry = $retry ?? new RetryPolicy();
        $this->sleeper = $sleeper ?? new RealSleeper();
        $this->logger = $logger ?? new NullLogger();
        $this->clock = $clock ?? new SystemClock();
    }

    /** var_dump() and print_r() of a client must not print the merchant key. */
    public function __debugInfo(): array
    {
        return ['baseUrl' => $this->baseUrl, 'merchantKey' => '[hidden]'];
    }

    /** A path with each argument percent-encoded as one segment. */
    public static function path(string $format, string ...$segments): string
    {
        return vsprintf($format, array_map('rawurlencode', $segments));
    }

    /**
     * @param array<string, string> $query
     * @return mixed the decoded JSON (objects as \stdClass)
     */
    public function get(string $path, array $query = [])
    {
        return $this->decode($this->send('GET', $path, $query, null, true));
    }

    /**
     * @param mixed $body encoded as JSON
     * @param bool $idempotent whether sending it twice is harmless (then 5xx and network
     *             failures are retried too)
     * @return mixed the decoded JSON (objects as \stdClass)
     */
    public function post(string $path, $body, bool $idempotent)
    {
        return $this->decode($this->send('POST', $path, [], Json::encode($body), $idempotent));
    }

    /** A 2xx answer's raw bytes (a bundle is verified byte for byte, never decoded first). */
    public function fetch(string $path): Response
    {
        return $this->send('GET', $path, [], null, true);
    }

    /**
     * @param array<string, string> $query
     * @throws ApiError|TransportException
     */
    public function send(string $method, string $path, array $query, ?string $body, bool $idempotent): Response
    {
        $url = $this->baseUrl . '/' . ltrim($path, '/') . ($query === [] ? '' : '?' . http_build_query($query, '', '&', PHP_QUERY_RFC3986));
        $headers = [
            'Authorization' => 'Bearer ' . $this->merchantKey,
            'Accept' => 'application/json',
            'User-Agent' => 'autoheal-php-sdk/' . Version::SDK,
        ];
        if ($body !== null) {
            $headers['Content-Type'] = 'application/json';
        }
        for ($attempt = 1;; $attempt++) {
            try {
                $response = $this->transport->request($method, $url, $headers, $body);
            } catch (TransportException $e) {
                $delay = $idempotent ? $this->retry->delayBefore($attempt, null) : null;
                if ($delay === null) {
                    throw $e;
                }
                $this->wait($method, $path, $attempt, $delay, $e->getMessage());
                continue;
            }
            if ($response->isSuccess()) {
                return $response;
            }
            $retryAfter = RetryPolicy::parseRetryAfter($response->header('retry-after'), $this->clock->now()->unixSeconds());
            $error = ApiError::fromResponse($response, $retryAfter);
            $delay = $this->retry->isRetryableStatus($response->status(), $idempotent)
                ? $this->retry->delayBefore($attempt, $retryAfter)
                : null;
            if ($delay === null) {
                throw $error;
            }
            $this->wait($method, $path, $attempt, $delay, $error->getMessage());
        }
    }

    private function wait(string $method, string $path, int $attempt, float $delay, string $why): void
    {
        $this->logger->log('warning', 'retrying ' . $method . ' ' . $path, [
            'attempt' => $attempt,
            'delay_seconds' => round($delay, 3),
            'why' => $why,
        ]);
        $this->sleeper->sleep($delay);
    }

    /** @return mixed */
    private function decode(Response $response)
    {
        if ($response->body() === '') {
            return null;
        }
        try {
            return Json::decode($response->body());
        } catch (JsonException $e) {
            throw new JsonException('the server answered ' . $response->status() . ' with a body that is not JSON', 0, $e);
        }
    }
}
