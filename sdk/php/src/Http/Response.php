<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

/** An HTTP answer: status, headers (names lower-cased; repeated ones joined by ", "), body. */
final class Response
{
    private int $status;
    /** @var array<string, string> */
    private array $headers;
    private string $body;

    /** @param array<string, string> $headers */
    public function __construct(int $status, array $headers, string $body)
    {
        $this->status = $status;
        $this->headers = [];
        foreach ($headers as $name => $value) {
            $this->headers[strtolower((string) $name)] = $value;
        }
        $this->body = $body;
    }

    public function status(): int
    {
        return $this->status;
    }

    /** @return array<string, string> */
    public function headers(): array
    {
        return $this->headers;
    }

    public function header(string $name): ?string
    {
        return $this->headers[strtolower($name)] ?? null;
    }

    public function body(): string
    {
        return $this->body;
    }

    public function isSuccess(): bool
    {
        return $this->status >= 200 && $this->status < 300;
    }

    /**
     * Raw header lines ("Name: value") into the map; later lines of the same name are
     * appended, as HTTP allows for list-valued headers.
     *
     * @param list<string> $lines
     * @return array<string, string>
     */
    public static function parseHeaderLines(array $lines): array
    {
        $headers = [];
        foreach ($lines as $line) {
            $colon = strpos($line, ':');
            if ($colon === false || $colon === 0) {
                continue;
            }
            $name = strtolower(trim(substr($line, 0, $colon)));
            $value = trim(substr($line, $colon + 1));
            $headers[$name] = isset($headers[$name]) ? $headers[$name] . ', ' . $value : $value;
        }
        return $headers;
    }
}
