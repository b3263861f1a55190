<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Operations;

use Autoheal\Sdk\Database\SqliteDialect;
use Autoheal\Sdk\Operations\Syntax;
use PHPUnit\Framework\TestCase;

/** The same cases as host/src/ops.rs's tests: the SDK and the server agree on every name and type. */
final class SyntaxTest extends TestCase
{
    public function testSqlColumnTypes(): void
    {
        foreach (['DECIMAL(10,2)', 'VARCHAR(191)', 'BIGINT UNSIGNED', 'TEXT', 'INT NOT NULL', 'BIGINT UNSIGNED NOT NULL', 'INT(10) UNSIGNED', 'JSON', 'DATETIME NULL'] as $ok) {
            self::assertTrue(Syntax::isSqlColumnType($ok), $ok);
        }
        foreach (['', 'decimal(10,2)', 'DECIMAL(10,2); DROP TABLE x', 'VARCHAR(', 'VARCHAR()', 'INT  NOT NULL', 'BLOB', 'TEXT DEFAULT 1', 'VARCHAR(123456)', 'DECIMAL(1,2,3)', 'INT UNSIGNED UNSIGNED', "INT\n", 'INT ', ' INT'] as $bad) {
            self::assertFalse(Syntax::isSqlColumnType($bad), json_encode($bad));
        }
    }

    public function testReportedColumnTypes(): void
    {
        foreach (['bigint(20) unsigned', 'varchar(191)', 'DECIMAL(10,2)', "enum('pending','paid')", 'timestamp(6) with time zone', 'double precision', 'longblob', 'tinyint(1) NOT NULL'] as $ok) {
            self::assertTrue(Syntax::isReportedColumnType($ok), $ok);
        }
        foreach (['', ' int', 'int ', 'int  unsigned', 'int; DROP TABLE x', 'varchar(191', 'varchar(1)(2)', 'enum("a")', 'int)', '1int', str_repeat('a', 129)] as $bad) {
            self::assertFalse(Syntax::isReportedColumnType($bad), $bad);
        }
    }

    public function testIdentifiersAndConfigKeys(): void
    {
        self::assertTrue(Syntax::isIdentifier('merchant_fee'));
        self::assertTrue(Syntax::isIdentifier('_x9'));
        self::assertFalse(Syntax::isIdentifier('1abc'));
        self::assertFalse(Syntax::isIdentifier('a-b'));
        self::assertFalse(Syntax::isIdentifier("a\n"));
        self::assertFalse(Syntax::isIdentifier(str_repeat('a', 65)));
        self::assertTrue(Syntax::isConfigKey('memory_limit'));
        self::assertTrue(Syntax::isConfigKey('payment.timeout_ms'));
        self::assertFalse(Syntax::isConfigKey('Memory'));
        self::assertFalse(Syntax::isConfigKey('a..b'));
        self::assertFalse(Syntax::isConfigKey('a.'));
    }

    public function testShortScalars(): void
    {
        self::assertTrue(Syntax::isShortScalar(str_repeat("\u{e9}", 256)), '256 characters, 512 bytes');
        self::assertFalse(Syntax::isShortScalar(str_repeat('a', 257)));
        self::assertFalse(Syntax::isShortScalar("\xff"), 'not UTF-8');
        self::assertFalse(Syntax::isShortScalar(NAN));
        self::assertFalse(Syntax::isShortScalar(null));
        self::assertFalse(Syntax::isShortScalar([]));
        self::assertTrue(Syntax::isShortScalar(false));
        self::assertTrue(Syntax::isShortScalar(1.5));
    }

    public function testSqliteTakesWordsBeforeParenthesesOnly(): void
    {
        self::assertSame('INT UNSIGNED(10) NOT NULL', SqliteDialect::declaredType('INT(10) UNSIGNED NOT NULL'));
        self::assertSame('DECIMAL(10,2)', SqliteDialect::declaredType('DECIMAL(10,2)'));
        self::assertSame('BIGINT UNSIGNED', SqliteDialect::declaredType('BIGINT UNSIGNED'));
    }
}
