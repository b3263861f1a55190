<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Log;

/** One line per entry through PHP's error_log (the PHP or WordPress debug log). */
final class ErrorLogLogger implements Logger
{
    private string $minimum;

    private const RANK = ['debug' => 0, 'info' => 1, 'warning' => 2, 'error' => 3];

    public function __construct(string $minimum = 'info')
    {
        if (!isset(self::RANK[$minimum])) {
            throw new \InvalidArgumentException('log level must be debug, info, warning or error');
        }
        $this->minimum = $minimum;
    }

    public function log(string $level, string $message, array $context = []): void
    {
        if ((self::RANK[$level] ?? 3) < self::RANK[$this->minimum]) {
            return;
        }
        // JSON-encoded, so a message cannot forge extra log lines with a newline; invalid
        // UTF-8 is substituted rather than losing the line.
        $line = json_encode(['message' => $message] + $context, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR);
        error_log('[autoheal] ' . $level . ' ' . $line);
    }
}
