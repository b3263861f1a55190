<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Database;

/**
 * SQLite. Its declared types are free text, so the allowed MySQL types are kept as they
 * are (the reported state then reads the same on both databases) — except that SQLite
 * takes words only before the parentheses: `INT(10) UNSIGNED` becomes `INT UNSIGNED(10)`
 * (same INTEGER affinity). DROP COLUMN needs SQLite 3.35 or later.
 */
final class SqliteDialect implements SqlDialect
{
    public function name(): string
    {
        return 'sqlite';
    }

    public function quote(string $identifier): string
    {
        return Identifier::quote($identifier, '"');
    }

    public function addColumnSql(string $table, string $column, string $columnType): string
    {
        return 'ALTER TABLE ' . $this->quote($table) . ' ADD COLUMN ' . $this->quote($column) . ' ' . self::declaredType($columnType);
    }

    public function dropColumnSql(\PDO $pdo, string $table, string $column): string
    {
        $version = (string) $pdo->query('SELECT sqlite_version()')->fetchColumn();
        if (version_compare($version, '3.35.0', '<')) {
            throw new DatabaseException('SQLite ' . $version . ' cannot drop a column (3.35 or later can)');
        }
        return 'ALTER TABLE ' . $this->quote($table) . ' DROP COLUMN ' . $this->quote($column);
    }

    public static function declaredType(string $columnType): string
    {
        if (preg_match('/^([A-Z]+)(\([0-9,]+\)) UNSIGNED(.*)$/D', $columnType, $m) === 1) {
            return $m[1] . ' UNSIGNED' . $m[2] . $m[3];
        }
        return $columnType;
    }

    public function documentType(): string
    {
        return 'TEXT';
    }

    public function tableOptions(): string
    {
        return '';
    }

    public function tables(\PDO $pdo): array
    {
        $rows = $pdo->query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
            ->fetchAll(\PDO::FETCH_COLUMN);
        return array_map('strval', $rows);
    }

    public function columns(\PDO $pdo, array $tables): array
    {
        $existing = $this->tables($pdo);
        $columns = [];
        foreach ($tables as $table) {
            if (!in_array($table, $existing, true)) {
                continue;
            }
            foreach ($pdo->query('PRAGMA table_info(' . $this->quote($table) . ')')->fetchAll(\PDO::FETCH_ASSOC) as $row) {
                $columns[$table][(string) $row['name']] = Identifier::upperType((string) $row['type']);
            }
        }
        return $columns;
    }
}
