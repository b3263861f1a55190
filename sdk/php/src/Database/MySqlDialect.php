<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Database;

/** MySQL and MariaDB. Their DDL is not transactional: undo is explicit (see OperationApplier). */
final class MySqlDialect implements SqlDialect
{
    public function name(): string
    {
        return 'mysql';
    }

    public function quote(string $identifier): string
    {
        return Identifier::quote($identifier, '`');
    }

    public function addColumnSql(string $table, string $column, string $columnType): string
    {
        return 'ALTER TABLE ' . $this->quote($table) . ' ADD COLUMN ' . $this->quote($column) . ' ' . $columnType;
    }

    public function dropColumnSql(\PDO $pdo, string $table, string $column): string
    {
        return 'ALTER TABLE ' . $this->quote($table) . ' DROP COLUMN ' . $this->quote($column);
    }

    public function documentType(): string
    {
        return 'MEDIUMTEXT';
    }

    public function tableOptions(): string
    {
        return ' ENGINE=InnoDB DEFAULT CHARSET=utf8mb4';
    }

    public function tables(\PDO $pdo): array
    {
        $rows = $pdo->query(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
        )->fetchAll(\PDO::FETCH_COLUMN);
        return array_map('strval', $rows);
    }

    public function columns(\PDO $pdo, array $tables): array
    {
        if ($tables === []) {
            return [];
        }
        $in = implode(', ', array_fill(0, count($tables), '?'));
        $statement = $pdo->prepare(
            'SELECT c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE FROM information_schema.COLUMNS c'
            . ' JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME'
            . " WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' AND c.TABLE_NAME IN (" . $in . ')'
            . ' ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION'
        );
        $statement->execute(array_values($tables));
        $columns = [];
        foreach ($statement->fetchAll(\PDO::FETCH_NUM) as [$table, $column, $type]) {
            $columns[(string) $table][(string) $column] = Identifier::upperType((string) $type);
        }
        return $columns;
    }
}
