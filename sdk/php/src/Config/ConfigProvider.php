<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Config;

/**
 * The plugin configuration reported in the heartbeat's `state.config`: key (lower-case
 * identifiers joined by dots) → scalar (string, number, boolean).
 */
interface ConfigProvider
{
    /** @return array<string, string|int|float|bool> */
    public function all(): array;
}
