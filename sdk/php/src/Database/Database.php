<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Database;

/** Connections the SDK can rely on, and the SQL dialect of a connection. */
final class Database
{
    private function __construct()
    {
    }

    /**
     * A PDO that throws on every error (the SDK never checks `false` returns) and, on MySQL,
     * prepares natively. Connection failures are rethrown without the PDO constructor in
     * their trace, whose arguments hold the password.
     */
    public static function connect(
        string $dsn,
        ?string $user,
        #[\SensitiveParameter]
        ?string $password
    ): \PDO {
        try {
            $pdo = new \PDO($dsn, $user, $password, [\PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION]);
        } catch (\PDOException $e) {
            throw new DatabaseException('cannot connect to the database: ' . $e->getMessage());
        }
        if ($pdo->getAttribute(\PDO::ATTR_DRIVER_NAME) === 'mysql') {
            $pdo->setAttribute(\PDO::ATTR_EMULATE_PREPARES, false);
        }
        return $pdo;
    }

    /** The dialect of a connection the SDK is given; it must throw on errors. */
    public static function dialect(\PDO $pdo): SqlDialect
    {
        if ((int) $pdo->getAttribute(\PDO::ATTR_ERRMODE) !== \PDO::ERRMODE_EXCEPTION) {
            throw new \InvalidArgumentException('the PDO must use PDO::ERRMODE_EXCEPTION (Database::connect sets it)');
        }
        $driver = (string) $pdo->getAttribute(\PDO::ATTR_DRIVER_NAME);
        switch ($driver) {
            case 'mysql':
                return new MySqlDialect();
            case 'sqlite':
                return new SqliteDialect();
            default:
                throw new \InvalidArgumentException('unsupported database driver ' . $driver . ' (MySQL/MariaDB and SQLite are)');
        }
    }
}
