<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Journal;

use Autoheal\Sdk\Journal\CommandRecord;
use Autoheal\Sdk\Journal\FileJournal;
use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Journal\JournalException;
use Autoheal\Sdk\Tests\Support\TempDir;

final class FileJournalTest extends JournalContract
{
    private string $dir;

    protected function setUp(): void
    {
        $this->dir = TempDir::create('file-journal');
    }

    protected function tearDown(): void
    {
        TempDir::remove($this->dir);
    }

    protected function journal(): Journal
    {
        return new FileJournal($this->dir . '/state');
    }

    public function testWritesAtomicallyAndLeavesNoTemporaryFiles(): void
    {
        $j = $this->journal();
        for ($i = 1; $i <= 20; $i++) {
            $j->recordAccepted($i, [], CommandRecord::known('c' . $i, $i));
        }
        $files = array_values(array_diff(scandir($this->dir . '/state'), ['.', '..']));
        sort($files);
        self::assertSame(['journal.json', 'journal.lock'], $files);
        $doc = json_decode((string) file_get_contents($this->dir . '/state/journal.json'), true);
        self::assertSame(20, $doc['last_sequence']);
        self::assertSame(0700, fileperms($this->dir . '/state') & 0777);
    }

    public function testACorruptJournalIsNeverTakenForAnEmptyOne(): void
    {
        $j = $this->journal();
        $j->recordAccepted(9, [], null);
        file_put_contents($this->dir . '/state/journal.json', '{"journal_format":1,"last_seq');
        $this->expectException(JournalException::class);
        $this->journal()->lastSequence();
    }

    public function testAJournalOfAnotherShapeIsRefused(): void
    {
        mkdir($this->dir . '/state');
        file_put_contents($this->dir . '/state/journal.json', '{"journal_format":1,"last_sequence":"9","installation_id":null,"bundle_versions":{},"commands":{},"inbox":[]}');
        $this->expectException(JournalException::class);
        $this->journal()->lastSequence();
    }

    public function testFinishedRecordsArePrunedOldestFirst(): void
    {
        $j = new FileJournal($this->dir . '/state', 10);
        $ack = ['success' => true, 'result' => ['plugin_version' => '1.0.0']];
        $j->save(CommandRecord::refused('pending', 'malformed', $ack));
        for ($i = 0; $i < 15; $i++) {
            $j->save(CommandRecord::refused('c' . $i, 'malformed', $ack)->withAckState(CommandRecord::ACK_DELIVERED));
        }
        $doc = json_decode((string) file_get_contents($this->dir . '/state/journal.json'), true);
        self::assertCount(11, $doc['commands']);
        self::assertNull($j->find('c4'), 'the oldest went');
        self::assertNotNull($j->find('c5'));
        self::assertNotNull($j->find('pending'), 'an ack not delivered is never pruned');
    }
}
