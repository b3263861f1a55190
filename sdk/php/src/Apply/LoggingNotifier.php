<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Apply;

use Autoheal\Sdk\Log\Logger;

/** The fallback when a plugin wires no notifier: the message goes to its log. */
final class LoggingNotifier implements Notifier
{
    private Logger $logger;

    public function __construct(Logger $logger)
    {
        $this->logger = $logger;
    }

    public function notify(string $template, string $severity, string $message, array $data): void
    {
        $this->logger->log($severity === 'critical' ? 'error' : 'warning', 'merchant notice ' . $template . ': ' . $message);
    }
}
