<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Log;

/**
 * The SDK's logging seam (PSR-3's shape without the dependency). Messages and context
 * never carry the merchant key or any other secret.
 */
interface Logger
{
    /** @param array<string, scalar|null> $context */
    public function log(string $level, string $message, array $context = []): void;
}
