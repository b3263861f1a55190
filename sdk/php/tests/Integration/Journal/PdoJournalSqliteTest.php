<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Journal;

use Autoheal\Sdk\Database\Database;
use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Journal\PdoJournal;
use Autoheal\Sdk\Tests\Support\TempDir;

final class PdoJournalSqliteTest extends JournalContract
{
    private string $dir;

    protected function setUp(): void
    {
        $this->dir = TempDir::create('sqlite-journal');
    }

    protected function tearDown(): void
    {
        TempDir::remove($this->dir);
    }

    protected function journal(): Journal
    {
        // A connection per instance, as two processes would have.
        return new PdoJournal(Database::connect('sqlite:' . $this->dir . '/shop.db', null, null), 'wp_');
    }

    public function testItsTablesAreCreatedWithThePrefix(): void
    {
        $this->journal();
        $pdo = Database::connect('sqlite:' . $this->dir . '/shop.db', null, null);
        $tables = $pdo->query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")->fetchAll(\PDO::FETCH_COLUMN);
        self::assertSame(['wp_autoheal_journal_bundles', 'wp_autoheal_journal_commands', 'wp_autoheal_journal_inbox', 'wp_autoheal_journal_lock', 'wp_autoheal_journal_state'], $tables);
    }

    public function testAnExpiredLockIsTakenOver(): void
    {
        $a = $this->journal();
        self::assertTrue($a->acquireLock(60));
        $pdo = Database::connect('sqlite:' . $this->dir . '/shop.db', null, null);
        $pdo->exec('UPDATE wp_autoheal_journal_lock SET expires_at = ' . (time() - 1));
        $b = $this->journal();
        self::assertTrue($b->acquireLock(60), 'a holder that died lets go after its TTL');
        $a->releaseLock();   // no longer its lock: releasing does not free b's
        self::assertFalse($this->journal()->acquireLock(60));
        $b->releaseLock();
    }
}
