<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Apply;

final class CallbackNotifier implements Notifier
{
    /** @var callable(string, string, string, array<string, scalar|null>): void */
    private $callback;

    /** @param callable(string $template, string $severity, string $message, array<string, scalar|null> $data): void $callback */
    public function __construct(callable $callback)
    {
        $this->callback = $callback;
    }

    public function notify(string $template, string $severity, string $message, array $data): void
    {
        ($this->callback)($template, $severity, $message, $data);
    }
}
