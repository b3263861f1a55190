<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Config;

/**
 * A configuration the SDK may change: what set_config and unset_config operations (and
 * their undo) write through. Each call takes effect durably before it returns, or throws
 * ConfigException.
 */
interface ConfigStore extends ConfigProvider
{
    public function has(string $key): bool;

    /** @return string|int|float|bool|null null when the key is not set */
    public function get(string $key);

    /** @param string|int|float|bool $value */
    public function set(string $key, $value): void;

    /** Removes the key; nothing happens when it is not set. */
    public function unset(string $key): void;
}
