<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Agent;

use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Journal\FileJournal;
use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Tests\Support\TempDir;

/** SQLite shop, file journal. */
final class AgentSqliteTest extends AgentContract
{
    private string $dir;
    private ?\PDO $pdo = null;

    protected function setUp(): void
    {
        $this->dir = TempDir::create('agent-sqlite');
        parent::setUp();
    }

    protected function tearDown(): void
    {
        parent::tearDown();
        $this->pdo = null;
        TempDir::remove($this->dir);
    }

    protected function shop(): \PDO
    {
        return $this->pdo ??= Database::connect('sqlite:' . $this->dir . '/shop.db', null, null);
    }

    protected function journal(): Journal
    {
        return new FileJournal($this->dir . '/journal');
    }

    protected function typeTheDatabaseRefuses(): string
    {
        return 'INT NOT NULL';   // refused on a table with rows: no default
    }
}
