<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Apply;

/** Where notify_merchant operations go (an admin notice, an email, …). Throw to fail the operation. */
interface Notifier
{
    /** @param array<string, scalar|null> $data */
    public function notify(string $template, string $severity, string $message, array $data): void;
}
