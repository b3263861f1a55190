<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Apply;

use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Tests\Support\TempDir;

final class ApplierSqliteTest extends ApplierContract
{
    private string $dir;
    private ?\PDO $pdo = null;

    protected function setUp(): void
    {
        $this->dir = TempDir::create('sqlite-apply');
    }

    protected function tearDown(): void
    {
        $this->pdo = null;
        TempDir::remove($this->dir);
    }

    protected function pdo(): \PDO
    {
        return $this->pdo ??= Database::connect('sqlite:' . $this->dir . '/shop.db', null, null);
    }

    protected function typeTheDatabaseRefuses(): string
    {
        return 'INT NOT NULL';   // SQLite cannot add a NOT NULL column without a default to a table with rows
    }

    public function testUnsignedWithAWidthIsAcceptedBySqlite(): void
    {
        $this->createShopTables();
        $ops = self::ops([['op' => 'add_column', 'table' => 'wp_molam_orders', 'column' => 'qty', 'column_type' => 'INT(10) UNSIGNED']]);
        $applier = $this->applier();
        self::assertTrue($applier->apply($ops, $applier->snapshot($ops))->isSuccess());
        self::assertSame('INT UNSIGNED(10)', $this->columns()['wp_molam_orders']['qty']);
    }
}
