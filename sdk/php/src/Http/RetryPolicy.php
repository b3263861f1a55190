<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

/**
 * When to try a request again and how long to wait first.
 *
 * Retried: 429 and 503 always (the server recorded nothing), other 5xx and network
 * failures only for idempotent requests (a telemetry event posted twice would be counted
 * twice). The wait is the server's Retry-After when it gives one, else exponential backoff
 * (base · 2^(attempt-1)) with "equal jitter" (half fixed, half random) so a fleet that
 * failed together does not retry together. A cron tick must end: every wait is capped, and
 * a Retry-After beyond the cap ends the retries instead of being shortened (the server
 * would refuse an early retry anyway).
 */
final class RetryPolicy
{
    private int $maxAttempts;
    private float $baseDelay;
    private float $maxDelay;
    /** @var callable(): float in [0, 1) */
    private $random;

    public function __construct(int $maxAttempts = 4, float $baseDelay = 0.5, float $maxDelay = 30.0, ?callable $random = null)
    {
        if ($maxAttempts < 1 || $baseDelay < 0 || $maxDelay < 0) {
            throw new \InvalidArgumentException('retry policy: at least one attempt, non-negative delays');
        }
        $this->maxAttempts = $maxAttempts;
        $this->baseDelay = $baseDelay;
        $this->maxDelay = $maxDelay;
        $this->random = $random ?? static fn (): float => random_int(0, PHP_INT_MAX - 1) / PHP_INT_MAX;
    }

    public static function none(): self
    {
        return new self(1);
    }

    public function maxAttempts(): int
    {
        return $this->maxAttempts;
    }

    public function isRetryableStatus(int $status, bool $idempotent): bool
    {
        if ($status === 429 || $status === 503) {
            return true;
        }
        return $idempotent && $status >= 500 && $status <= 599;
    }

    /**
     * Seconds to wait before attempt $attempt + 1, or null to stop.
     *
     * @param int $attempt the attempt that just failed, from 1
     */
    public function delayBefore(int $attempt, ?float $retryAfter): ?float
    {
        if ($attempt >= $this->maxAttempts) {
            return null;
        }
        if ($retryAfter !== null) {
            return $retryAfter <= $this->maxDelay ? $retryAfter : null;
        }
        $full = min($this->maxDelay, $this->baseDelay * (2 ** ($attempt - 1)));
        return $full / 2 + ($full / 2) * ($this->random)();
    }

    /**
     * Retry-After as seconds from $now: delta-seconds, or an HTTP-date in any of the three
     * forms RFC 9110 makes recipients accept. Unreadable: null (backoff applies).
     */
    public static function parseRetryAfter(?string $value, int $now): ?float
    {
        if ($value === null) {
            return null;
        }
        $value = trim($value);
        if (preg_match('/^\d{1,10}$/D', $value) === 1) {
            return (float) (int) $value;
        }
        $utc = new \DateTimeZone('UTC');
        foreach (['D, d M Y H:i:s \G\M\T', 'l, d-M-y H:i:s \G\M\T', 'D M j H:i:s Y'] as $format) {
            $date = \DateTimeImmutable::createFromFormat('!' . $format, preg_replace('/ +/', ' ', $value), $utc);
            $errors = \DateTimeImmutable::getLastErrors();
            $clean = $errors === false || ($errors['warning_count'] === 0 && $errors['error_count'] === 0);
            if ($date !== false && $clean) {
                return (float) max(0, $date->getTimestamp() - $now);
            }
        }
        return null;
    }
}
