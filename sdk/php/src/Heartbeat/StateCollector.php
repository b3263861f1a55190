<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Heartbeat;

use Autoheal\Sdk\Config\ConfigProvider;
use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Database\TableSelection;
use Autoheal\Sdk\Log\Logger;
use Autoheal\Sdk\Log\NullLogger;
use Autoheal\Sdk\Operations\Syntax;

/**
 * The heartbeat's `state`: the plugin's own tables (column → type, from the database
 * itself) and its configuration, within sdk/schemas/state.json. The server refuses a whole
 * heartbeat for one value that does not fit, so what does not fit is left out (and logged)
 * rather than sent: 512 tables of 512 columns, types the schema's pattern reads, 512 config
 * keys of short scalars, 64 facts.
 */
final class StateCollector
{
    public const MAX_TABLES = 512;
    public const MAX_COLUMNS = 512;
    public const MAX_CONFIG = 512;
    public const MAX_FACTS = 64;
    private const RESERVED = ['config', 'tables', 'platform', 'plugin_version', 'php_version', 'wordpress_version'];

    private ?\PDO $pdo;
    private ?TableSelection $tables;
    private ?ConfigProvider $config;
    /** @var callable(): array<string, mixed>|null */
    private $facts;
    private Logger $logger;
    /** @var list<string> */
    private array $skipped = [];

    /** @param callable(): array<string, mixed>|null $facts other facts rules may read (identifier → null, short scalar or list of them) */
    public function __construct(?\PDO $pdo, ?TableSelection $tables, ?ConfigProvider $config, ?callable $facts = null, ?Logger $logger = null)
    {
        if (($pdo === null) !== ($tables === null)) {
            throw new \InvalidArgumentException('tables are collected from a PDO and a TableSelection together');
        }
        $this->pdo = $pdo;
        $this->tables = $tables;
        $this->config = $config;
        $this->facts = $facts;
        $this->logger = $logger ?? new NullLogger();
    }

    /** @return array<string, mixed> JSON-ready (maps are objects, so `{}` stays `{}`) */
    public function collect(): array
    {
        $this->skipped = [];
        $state = [];
        if ($this->config !== null) {
            $state['config'] = (object) $this->config();
        }
        if ($this->pdo !== null) {
            $state['tables'] = (object) $this->tables();
        }
        foreach ($this->facts() as $name => $value) {
            $state[$name] = $value;
        }
        foreach ($this->skipped as $what) {
            $this->logger->log('warning', 'left out of the reported state: ' . $what);
        }
        return $state;
    }

    /** @return list<string> what the last collect() left out, and why */
    public function skipped(): array
    {
        return $this->skipped;
    }

    /** @return array<string, object> */
    private function tables(): array
    {
        $pdo = $this->pdo;
        $selection = $this->tables;
        if ($pdo === null || $selection === null) {
            return [];
        }
        $dialect = Database::dialect($pdo);
        $names = [];
        foreach ($selection->select($dialect->tables($pdo)) as $table) {
            if (!Syntax::isIdentifier($table)) {
                $this->skipped[] = 'table ' . substr($table, 0, 80) . ' (not an identifier)';
            } elseif (count($names) >= self::MAX_TABLES) {
                $this->skipped[] = 'table ' . $table . ' (more than ' . self::MAX_TABLES . ' tables)';
            } else {
                $names[] = $table;
            }
        }
        $out = [];
        foreach ($dialect->columns($pdo, $names) as $table => $columns) {
            $kept = [];
            foreach ($columns as $column => $type) {
                if (!Syntax::isIdentifier($column)) {
                    $this->skipped[] = 'column ' . $table . '.' . substr($column, 0, 80) . ' (not an identifier)';
                } elseif (!Syntax::isReportedColumnType($type)) {
                    $this->skipped[] = 'column ' . $table . '.' . $column . ' (type not reportable)';
                } elseif (count($kept) >= self::MAX_COLUMNS) {
                    $this->skipped[] = 'column ' . $table . '.' . $column . ' (more than ' . self::MAX_COLUMNS . ' columns)';
                } else {
                    $kept[$column] = $type;
                }
            }
            $out[$table] = (object) $kept;
        }
        return $out;
    }

    /** @return array<string, string|int|float|bool> */
    private function config(): array
    {
        $all = $this->config->all();
        ksort($all, SORT_STRING);
        $out = [];
        foreach ($all as $key => $value) {
            $key = (string) $key;
            if (!Syntax::isConfigKey($key)) {
                $this->skipped[] = 'config ' . substr($key, 0, 80) . ' (not a config key)';
            } elseif (!Syntax::isShortScalar($value)) {
                $this->skipped[] = 'config ' . $key . ' (not a short scalar)';
            } elseif (count($out) >= self::MAX_CONFIG) {
                $this->skipped[] = 'config ' . $key . ' (more than ' . self::MAX_CONFIG . ' keys)';
            } else {
                $out[$key] = $value;
            }
        }
        return $out;
    }

    /** @return array<string, mixed> */
    private function facts(): array
    {
        if ($this->facts === null) {
            return [];
        }
        $out = [];
        foreach (($this->facts)() as $name => $value) {
            $name = (string) $name;
            $isList = is_array($value) && count($value) <= 64 && array_values($value) === $value
                && count(array_filter($value, static fn ($v): bool => !Syntax::isShortScalar($v))) === 0;
            if (!Syntax::isIdentifier($name) || in_array($name, self::RESERVED, true)) {
                $this->skipped[] = 'fact ' . substr($name, 0, 80) . ' (not an identifier, or a name the server sets)';
            } elseif (!($value === null || Syntax::isShortScalar($value) || $isList)) {
                $this->skipped[] = 'fact ' . $name . ' (not null, a short scalar or a list of at most 64)';
            } elseif (count($out) >= self::MAX_FACTS) {
                $this->skipped[] = 'fact ' . $name . ' (more than ' . self::MAX_FACTS . ' facts)';
            } else {
                $out[$name] = $value;
            }
        }
        return $out;
    }
}
