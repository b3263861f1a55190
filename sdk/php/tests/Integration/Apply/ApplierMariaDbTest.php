<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Apply;

use Autoheal\Sdk\Tests\Support\MariaDb;

final class ApplierMariaDbTest extends ApplierContract
{
    private ?MariaDb $db = null;
    private ?\PDO $pdo = null;

    protected function setUp(): void
    {
        $this->db = MariaDb::create($this);
    }

    protected function tearDown(): void
    {
        $this->pdo = null;
        if ($this->db !== null) {
            $this->db->drop();
        }
    }

    protected function pdo(): \PDO
    {
        return $this->pdo ??= $this->db->connect();
    }

    protected function typeTheDatabaseRefuses(): string
    {
        return 'DECIMAL(70,2)';   // precision above 65: refused in every SQL mode
    }

    public function testReportsTypesAsMariaDbDoes(): void
    {
        $this->createShopTables();
        self::assertSame(['id' => 'BIGINT(20) UNSIGNED', 'amount' => 'DECIMAL(10,2)'], $this->columns()['wp_molam_orders']);
    }
}
