<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Config;

use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Database\SqlDialect;
use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Support\JsonException;

/**
 * Configuration in an options table of the plugin's database (created if missing), one row
 * per key, the value as JSON so that its type (string, number, boolean) survives.
 */
final class PdoConfigStore implements ConfigStore
{
    private \PDO $pdo;
    private SqlDialect $dialect;
    private string $table;

    public function __construct(\PDO $pdo, string $table = 'autoheal_config')
    {
        $this->pdo = $pdo;
        $this->dialect = Database::dialect($pdo);
        $this->table = $this->dialect->quote($table);
        $this->guard(fn () => $this->pdo->exec(
            'CREATE TABLE IF NOT EXISTS ' . $this->table . ' (' . $this->dialect->quote('name') . ' VARCHAR(64) NOT NULL PRIMARY KEY, '
            . $this->dialect->quote('value') . ' TEXT NOT NULL)' . $this->dialect->tableOptions()
        ));
    }

    public function all(): array
    {
        $rows = $this->guard(fn () => $this->pdo->query(
            'SELECT ' . $this->dialect->quote('name') . ', ' . $this->dialect->quote('value') . ' FROM ' . $this->table . ' ORDER BY ' . $this->dialect->quote('name')
        )->fetchAll(\PDO::FETCH_NUM));
        $all = [];
        foreach ($rows as [$name, $value]) {
            $all[(string) $name] = $this->decode((string) $name, (string) $value);
        }
        return $all;
    }

    public function has(string $key): bool
    {
        return $this->get($key) !== null;
    }

    public function get(string $key)
    {
        ConfigValues::checkKey($key);
        $statement = $this->guard(function () use ($key) {
            $s = $this->pdo->prepare('SELECT ' . $this->dialect->quote('value') . ' FROM ' . $this->table . ' WHERE ' . $this->dialect->quote('name') . ' = ?');
            $s->execute([$key]);
            return $s;
        });
        $value = $statement->fetchColumn();
        return $value === false ? null : $this->decode($key, (string) $value);
    }

    public function set(string $key, $value): void
    {
        ConfigValues::check($key, $value);
        // REPLACE is an upsert in both MySQL and SQLite.
        $this->guard(fn () => $this->pdo->prepare(
            'REPLACE INTO ' . $this->table . ' (' . $this->dialect->quote('name') . ', ' . $this->dialect->quote('value') . ') VALUES (?, ?)'
        )->execute([$key, Json::encode($value)]));
    }

    public function unset(string $key): void
    {
        ConfigValues::checkKey($key);
        $this->guard(fn () => $this->pdo->prepare('DELETE FROM ' . $this->table . ' WHERE ' . $this->dialect->quote('name') . ' = ?')->execute([$key]));
    }

    /** @return string|int|float|bool */
    private function decode(string $key, string $json)
    {
        try {
            $value = Json::decode($json);
        } catch (JsonException $e) {
            throw new ConfigException('config ' . $key . ' holds a value that is not JSON');
        }
        if (!is_scalar($value)) {
            throw new ConfigException('config ' . $key . ' holds a value that is not a scalar');
        }
        return $value;
    }

    /**
     * @template T
     * @param callable(): T $call
     * @return T
     */
    private function guard(callable $call)
    {
        try {
            return $call();
        } catch (\PDOException $e) {
            throw new ConfigException('config table ' . $this->table . ': ' . $e->getMessage(), 0, $e);
        }
    }
}
