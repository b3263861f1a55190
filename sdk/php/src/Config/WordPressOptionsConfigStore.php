<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Config;

/**
 * Configuration in one WordPress option (an associative array, serialized by WordPress),
 * through get_option / update_option, so caches and hooks see every change.
 */
final class WordPressOptionsConfigStore implements ConfigStore
{
    private string $option;

    public function __construct(string $option = 'autoheal_config')
    {
        if (!function_exists('get_option')) {
            throw new \LogicException('WordPressOptionsConfigStore runs inside WordPress only');
        }
        $this->option = $option;
    }

    public function all(): array
    {
        $value = get_option($this->option, []);
        if (!is_array($value)) {
            throw new ConfigException('option ' . $this->option . ' does not hold the configuration map');
        }
        return $value;
    }

    public function has(string $key): bool
    {
        return array_key_exists($key, $this->all());
    }

    public function get(string $key)
    {
        return $this->all()[$key] ?? null;
    }

    public function set(string $key, $value): void
    {
        ConfigValues::check($key, $value);
        $all = $this->all();
        $all[$key] = $value;
        $this->write($all);
    }

    public function unset(string $key): void
    {
        ConfigValues::checkKey($key);
        $all = $this->all();
        if (!array_key_exists($key, $all)) {
            return;
        }
        unset($all[$key]);
        $this->write($all);
    }

    /** @param array<string, string|int|float|bool> $all */
    private function write(array $all): void
    {
        ksort($all);
        // update_option answers false both when it fails and when nothing changed: read the
        // option back to know which.
        update_option($this->option, $all);
        if ($this->all() !== $all) {
            throw new ConfigException('option ' . $this->option . ' could not be written');
        }
    }
}
