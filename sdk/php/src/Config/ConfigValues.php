<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Config;

use Autoheal\Sdk\Operations\Syntax;

/** The checks every ConfigStore applies to what it is asked to write. */
final class ConfigValues
{
    private function __construct()
    {
    }

    /** @param mixed $value */
    public static function check(string $key, $value): void
    {
        if (!Syntax::isConfigKey($key)) {
            throw new ConfigException('not a config key: ' . substr($key, 0, 80));
        }
        if (!Syntax::isShortScalar($value)) {
            throw new ConfigException('config ' . $key . ': a value is a string of at most 256 characters, a number or a boolean');
        }
    }

    public static function checkKey(string $key): void
    {
        if (!Syntax::isConfigKey($key)) {
            throw new ConfigException('not a config key: ' . substr($key, 0, 80));
        }
    }
}
