<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

use Autoheal\Sdk\AutohealException;

/**
 * The server answered with an error: its status and its `{"error": {"code", "message",
 * "field"}}` envelope (code `http_<status>` when the body was not that envelope).
 */
final class ApiError extends AutohealException
{
    private int $status;
    private string $errorCode;
    private ?string $field;
    private ?float $retryAfter;

    public function __construct(int $status, string $errorCode, string $message, ?string $field, ?float $retryAfter = null)
    {
        parent::__construct('HTTP ' . $status . ' ' . $errorCode . ': ' . $message . ($field !== null ? ' (field ' . $field . ')' : ''));
        $this->status = $status;
        $this->errorCode = $errorCode;
        $this->field = $field;
        $this->retryAfter = $retryAfter;
    }

    public static function fromResponse(Response $response, ?float $retryAfter): self
    {
        $code = 'http_' . $response->status();
        $message = 'the server answered ' . $response->status();
        $field = null;
        $decoded = json_decode($response->body(), true);
        if (is_array($decoded) && isset($decoded['error']) && is_array($decoded['error'])) {
            $e = $decoded['error'];
            if (isset($e['code']) && is_string($e['code'])) {
                $code = $e['code'];
            }
            if (isset($e['message']) && is_string($e['message'])) {
                $message = $e['message'];
            }
            if (isset($e['field']) && is_string($e['field'])) {
                $field = $e['field'];
            }
        }
        return new self($response->status(), $code, $message, $field, $retryAfter);
    }

    public function status(): int
    {
        return $this->status;
    }

    /** The server's `error.code`: `invalid_field`, `rate_limited`, `not_found`, … */
    public function errorCode(): string
    {
        return $this->errorCode;
    }

    public function field(): ?string
    {
        return $this->field;
    }

    /** Seconds the server asked to wait (Retry-After), if it said. */
    public function retryAfter(): ?float
    {
        return $this->retryAfter;
    }
}
