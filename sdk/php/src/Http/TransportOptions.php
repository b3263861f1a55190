<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

use Autoheal\Sdk\Support\Text;

/** What every transport shares: timeouts, the largest answer it reads, and request checks. */
final class TransportOptions
{
    /** Bundles are at most 8 MiB; twice that leaves room and still bounds memory. */
    public const DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

    private float $connectTimeout;
    private float $timeout;
    private int $maxResponseBytes;

    public function __construct(float $connectTimeout = 10.0, float $timeout = 30.0, int $maxResponseBytes = self::DEFAULT_MAX_RESPONSE_BYTES)
    {
        if ($connectTimeout <= 0 || $timeout <= 0 || $maxResponseBytes < 1) {
            throw new \InvalidArgumentException('timeouts and the response limit must be positive');
        }
        $this->connectTimeout = $connectTimeout;
        $this->timeout = $timeout;
        $this->maxResponseBytes = $maxResponseBytes;
    }

    public function connectTimeout(): float
    {
        return $this->connectTimeout;
    }

    public function timeout(): float
    {
        return $this->timeout;
    }

    public function maxResponseBytes(): int
    {
        return $this->maxResponseBytes;
    }

    /**
     * Only http(s) URLs (no file://, php://, …) and header values without line breaks
     * (which would let a value inject headers).
     *
     * @param array<string, string> $headers
     */
    public static function checkRequest(string $method, string $url, array $headers): void
    {
        if (preg_match('/^[A-Z]+$/D', $method) !== 1) {
            throw new \InvalidArgumentException('HTTP method must be upper-case letters');
        }
        if (!Text::startsWith($url, 'https://') && !Text::startsWith($url, 'http://')) {
            throw new \InvalidArgumentException('only http and https URLs are requested');
        }
        foreach ($headers as $name => $value) {
            if (preg_match('/^[A-Za-z0-9-]+$/D', (string) $name) !== 1 || preg_match('/[\r\n\0]/', $value) === 1) {
                throw new \InvalidArgumentException('invalid HTTP header ' . $name);
            }
        }
    }
}
