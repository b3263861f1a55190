<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Operations;

use Autoheal\Sdk\Support\Text;

/**
 * The name and type rules of the protocol, as the server's host checks them
 * (host/src/ops.rs), so the SDK refuses exactly what the server would never produce.
 */
final class Syntax
{
    public const MAX_IDENTIFIER = 64;
    public const MAX_CONFIG_VALUE = 256;
    public const MAX_MESSAGE = 2000;
    public const MAX_REPORTED_TYPE = 128;

    /** SQL base types an add_column may use (with `(n)`/`(p,s)` and UNSIGNED, NULL, NOT NULL). */
    public const SQL_BASE_TYPES = [
        'TINYINT', 'SMALLINT', 'INT', 'INTEGER', 'BIGINT', 'DECIMAL', 'NUMERIC', 'FLOAT', 'DOUBLE',
        'VARCHAR', 'CHAR', 'TEXT', 'MEDIUMTEXT', 'LONGTEXT', 'DATE', 'DATETIME', 'TIMESTAMP', 'BOOLEAN', 'JSON',
    ];

    private function __construct()
    {
    }

    /** `[A-Za-z_][A-Za-z0-9_]*`, at most 64 characters: safe to quote as a SQL identifier. */
    public static function isIdentifier(string $s): bool
    {
        return strlen($s) <= self::MAX_IDENTIFIER && preg_match('/^[A-Za-z_][A-Za-z0-9_]*$/D', $s) === 1;
    }

    /** Lower-case identifiers joined by dots (`payment.timeout_ms`), at most 64 characters. */
    public static function isConfigKey(string $s): bool
    {
        return strlen($s) <= self::MAX_IDENTIFIER && preg_match('/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$/D', $s) === 1;
    }

    /**
     * A type an add_column may carry: an allowed base type, optional `(n)` or `(p,s)` of at
     * most five digits each, then nothing, UNSIGNED, NULL, NOT NULL, UNSIGNED NULL or
     * UNSIGNED NOT NULL. Upper case, single spaces: nothing else reaches the SQL.
     */
    public static function isSqlColumnType(string $s): bool
    {
        if (strlen($s) > self::MAX_IDENTIFIER) {
            return false;
        }
        if (preg_match('/^([A-Z]+)(\((\d{1,5})(,\d{1,5})?\))?((?: [A-Z]+)*)$/D', $s, $m) !== 1) {
            return false;
        }
        if (!in_array($m[1], self::SQL_BASE_TYPES, true)) {
            return false;
        }
        return in_array($m[5] ?? '', ['', ' UNSIGNED', ' NULL', ' NOT NULL', ' UNSIGNED NULL', ' UNSIGNED NOT NULL'], true);
    }

    /**
     * A column type as a database reports it (`BIGINT(20) UNSIGNED`, `ENUM('a','b')`):
     * words, at most one argument list of letters, digits, `_ , ' . -` and spaces, then
     * words; at most 128 characters (sdk/schemas/state.json's column_type).
     */
    public static function isReportedColumnType(string $s): bool
    {
        return strlen($s) <= self::MAX_REPORTED_TYPE
            && preg_match("/^[A-Za-z][A-Za-z0-9_]*( [A-Za-z][A-Za-z0-9_]*)*(\\([A-Za-z0-9_,' .-]*\\))?( [A-Za-z][A-Za-z0-9_]*)*$/D", $s) === 1;
    }

    /**
     * A short scalar of the state and of notification data: a UTF-8 string of at most 256
     * characters, a finite number, a boolean.
     *
     * @param mixed $value
     */
    public static function isShortScalar($value): bool
    {
        if (is_string($value)) {
            return Text::isUtf8($value) && Text::length($value) <= self::MAX_CONFIG_VALUE;
        }
        return is_int($value) || (is_float($value) && is_finite($value)) || is_bool($value);
    }
}
