<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Agent;

use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Journal\PdoJournal;
use Autoheal\Sdk\Tests\Support\MariaDb;

/** MariaDB shop, journal in the shop's database on the same connection (DDL commits implicitly there). */
final class AgentMariaDbTest extends AgentContract
{
    private ?MariaDb $db = null;
    private ?\PDO $pdo = null;

    protected function setUp(): void
    {
        $this->db = MariaDb::create($this);
        parent::setUp();
    }

    protected function tearDown(): void
    {
        parent::tearDown();
        $this->pdo = null;
        if ($this->db !== null) {
            $this->db->drop();
        }
    }

    protected function shop(): \PDO
    {
        return $this->pdo ??= $this->db->connect();
    }

    protected function journal(): Journal
    {
        return new PdoJournal($this->shop());
    }

    protected function typeTheDatabaseRefuses(): string
    {
        return 'DECIMAL(70,2)';
    }
}
