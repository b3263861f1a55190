<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Support;

use Autoheal\Sdk\Database\Database;
use PHPUnit\Framework\Assert;
use PHPUnit\Framework\TestCase;

/**
 * A throwaway MariaDB/MySQL database per test (`autoheal_sdk_<random>`), on the server named
 * by AUTOHEAL_TEST_MARIADB_DSN (default mysql:host=127.0.0.1;port=3306;dbname=test) and
 * AUTOHEAL_TEST_MARIADB_USER/_PASSWORD (root, empty). Unreachable: the test is skipped, or
 * fails when CI is set.
 */
final class MariaDb
{
    private \PDO $admin;
    private string $name;
    private string $dsn;

    private function __construct(\PDO $admin, string $name, string $dsn)
    {
        $this->admin = $admin;
        $this->name = $name;
        $this->dsn = $dsn;
    }

    public static function create(TestCase $test): self
    {
        $dsn = getenv('AUTOHEAL_TEST_MARIADB_DSN') ?: 'mysql:host=127.0.0.1;port=3306;dbname=test';
        try {
            $admin = Database::connect($dsn, self::user(), self::password());
        } catch (\Throwable $e) {
            if (getenv('CI') !== false && getenv('CI') !== '') {
                Assert::fail('MariaDB is required under CI: ' . $e->getMessage());
            }
            $test->markTestSkipped('MariaDB unreachable (' . $e->getMessage() . '); set AUTOHEAL_TEST_MARIADB_DSN');
        }
        $name = 'autoheal_sdk_' . bin2hex(random_bytes(6));
        $admin->exec('CREATE DATABASE `' . $name . '` CHARACTER SET utf8mb4');
        $db = preg_replace('/(^|;)dbname=[^;]*/', '', substr($dsn, strlen('mysql:')));
        return new self($admin, $name, 'mysql:' . trim((string) $db, ';') . ';dbname=' . $name);
    }

    public static function user(): string
    {
        return getenv('AUTOHEAL_TEST_MARIADB_USER') ?: 'root';
    }

    public static function password(): string
    {
        return getenv('AUTOHEAL_TEST_MARIADB_PASSWORD') ?: '';
    }

    /** A new connection to the throwaway database. */
    public function connect(): \PDO
    {
        return Database::connect($this->dsn, self::user(), self::password());
    }

    public function dsn(): string
    {
        return $this->dsn;
    }

    public function drop(): void
    {
        $this->admin->exec('DROP DATABASE IF EXISTS `' . $this->name . '`');
    }
}
