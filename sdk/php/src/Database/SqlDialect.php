<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Database;

/**
 * What differs between MySQL/MariaDB and SQLite for the SDK: identifier quoting, the DDL
 * of the operations, the journal's column types, and schema introspection.
 */
interface SqlDialect
{
    public function name(): string;

    /** A quoted identifier; refuses anything that is not `[A-Za-z_][A-Za-z0-9_]*`. */
    public function quote(string $identifier): string;

    public function addColumnSql(string $table, string $column, string $columnType): string;

    public function dropColumnSql(\PDO $pdo, string $table, string $column): string;

    /** A column type for JSON documents of a few hundred kilobytes. */
    public function documentType(): string;

    /** Appended to the journal's CREATE TABLE statements. */
    public function tableOptions(): string;

    /** @return list<string> base tables of the connection's database (no views) */
    public function tables(\PDO $pdo): array;

    /**
     * Column => type as the database reports it (upper-cased outside quotes), in column
     * order, for each of $tables that exists.
     *
     * @param list<string> $tables
     * @return array<string, array<string, string>>
     */
    public function columns(\PDO $pdo, array $tables): array;
}
