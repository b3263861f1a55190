<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Journal;

use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Journal\PdoJournal;
use Autoheal\Sdk\Tests\Support\MariaDb;

final class PdoJournalMariaDbTest extends JournalContract
{
    private ?MariaDb $db = null;

    protected function setUp(): void
    {
        $this->db = MariaDb::create($this);
    }

    protected function tearDown(): void
    {
        if ($this->db !== null) {
            $this->db->drop();
        }
    }

    protected function journal(): Journal
    {
        return new PdoJournal($this->db->connect());
    }
}
