<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Apply;

/**
 * What a list of operations touches, as it was before the first was applied: the columns
 * of each table named (null: no such table) and each config key's value (absent: not
 * set). Journaled with the command, so an undo — even after a crash — restores it.
 */
final class Snapshot
{
    /** @var array<string, array<string, string>|null> */
    private array $tables;
    /** @var array<string, array{present: bool, value: string|int|float|bool|null}> */
    private array $config;

    /**
     * @param array<string, array<string, string>|null> $tables
     * @param array<string, array{present: bool, value: string|int|float|bool|null}> $config
     */
    public function __construct(array $tables, array $config)
    {
        $this->tables = $tables;
        $this->config = $config;
    }

    public function columnType(string $table, string $column): ?string
    {
        return $this->tables[$table][$column] ?? null;
    }

    public function hasColumn(string $table, string $column): bool
    {
        return isset($this->tables[$table][$column]);
    }

    public function hasConfig(string $key): bool
    {
        return $this->config[$key]['present'] ?? false;
    }

    /** @return string|int|float|bool|null */
    public function configValue(string $key)
    {
        return $this->config[$key]['value'] ?? null;
    }

    /** @return array<string, mixed> */
    public function toArray(): array
    {
        return ['tables' => $this->tables, 'config' => $this->config];
    }

    /** @param array<string, mixed> $data as toArray() wrote it (from the journal) */
    public static function fromArray(array $data): self
    {
        $tables = [];
        foreach (is_array($data['tables'] ?? null) ? $data['tables'] : [] as $table => $columns) {
            $tables[(string) $table] = is_array($columns) ? array_map('strval', $columns) : null;
        }
        $config = [];
        foreach (is_array($data['config'] ?? null) ? $data['config'] : [] as $key => $entry) {
            $present = is_array($entry) && ($entry['present'] ?? false) === true;
            $value = $present ? $entry['value'] : null;
            $config[(string) $key] = ['present' => $present && is_scalar($value), 'value' => is_scalar($value) ? $value : null];
        }
        return new self($tables, $config);
    }
}
