<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Integration\Journal;

use Autoheal\Sdk\Journal\CommandRecord;
use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Journal\JournalException;
use PHPUnit\Framework\TestCase;

/** What every Journal must do, run against each implementation (file, SQLite, MariaDB). */
abstract class JournalContract extends TestCase
{
    /** A fresh, empty journal; a second call gives another instance over the same storage. */
    abstract protected function journal(): Journal;

    public function testStartsEmpty(): void
    {
        $j = $this->journal();
        self::assertSame(0, $j->lastSequence());
        self::assertNull($j->newestBundleVersion('add_missing_column'));
        self::assertNull($j->installationId());
        self::assertNull($j->find('x'));
        self::assertSame([], $j->inbox());
        self::assertSame([], $j->undeliveredAcks());
        self::assertSame([], $j->interrupted());
    }

    public function testSequenceOnlyMovesUp(): void
    {
        $j = $this->journal();
        $j->recordAccepted(12, [], null);
        $j->recordAccepted(7, [], null);
        self::assertSame(12, $j->lastSequence());
        self::assertSame(12, $this->journal()->lastSequence(), 'durable across instances');
    }

    public function testBundleVersionsOnlyMoveUpBySemver(): void
    {
        $j = $this->journal();
        $j->recordAccepted(1, ['add_missing_column' => '1.0.9'], null);
        $j->recordAccepted(2, ['add_missing_column' => '1.0.10', 'other' => '2.0.0-rc.1'], null);
        $j->recordAccepted(3, ['add_missing_column' => '1.0.2'], null);
        self::assertSame('1.0.10', $j->newestBundleVersion('add_missing_column'));
        self::assertSame('2.0.0-rc.1', $this->journal()->newestBundleVersion('other'));
        $this->expectException(JournalException::class);
        $j->recordAccepted(4, ['bad' => 'one'], null);
    }

    public function testAcceptanceRecordsEverythingAtOnce(): void
    {
        $j = $this->journal();
        $record = CommandRecord::applying('cmd-1', 5, 'apply_patch', [['op' => 'add_column', 'table' => 't', 'column' => 'c', 'column_type' => 'INT']], ['tables' => ['t' => ['id' => 'INT']], 'config' => []]);
        $j->recordAccepted(5, ['add_missing_column' => '1.0.3'], $record);
        $again = $this->journal();
        self::assertSame(5, $again->lastSequence());
        $found = $again->find('cmd-1');
        self::assertNotNull($found);
        self::assertSame(CommandRecord::PHASE_APPLYING, $found->phase());
        self::assertSame(5, $found->sequence());
        self::assertSame('INT', $found->operations()[0]['column_type']);
        self::assertSame(['id' => 'INT'], $found->snapshot()['tables']['t']);
        self::assertCount(1, $again->interrupted());
    }

    public function testRecordLifecycle(): void
    {
        $j = $this->journal();
        $r = CommandRecord::applying('cmd-2', 1, 'apply_patch', [], ['tables' => [], 'config' => []]);
        $j->recordAccepted(1, [], $r);
        $r = $r->withInEffect(1);
        $j->save($r);
        self::assertSame(1, $j->find('cmd-2')->inEffect());
        $ack = ['success' => false, 'result' => ['error' => 'boom', 'applied_operations' => 0]];
        $r = $r->withInEffect(0)->withAck($ack);
        $j->save($r);
        self::assertSame([], $j->interrupted());
        self::assertSame(['cmd-2'], array_map(static fn (CommandRecord $x): string => $x->id(), $j->undeliveredAcks()));
        self::assertSame($ack, $j->find('cmd-2')->ack());
        $j->save($r->withAckState(CommandRecord::ACK_DELIVERED));
        self::assertSame([], $this->journal()->undeliveredAcks());
        self::assertSame(CommandRecord::ACK_DELIVERED, $this->journal()->find('cmd-2')->ackState());
    }

    public function testRefusalsAreRecordedWithTheirAck(): void
    {
        $j = $this->journal();
        $j->save(CommandRecord::refused('cmd-3', 'signature_invalid', ['success' => false, 'outcome' => 'refused', 'result' => ['reason' => 'signature_invalid', 'error' => 'x']]));
        $r = $this->journal()->find('cmd-3');
        self::assertSame(CommandRecord::REFUSED, $r->verdict());
        self::assertSame('signature_invalid', $r->reason());
        self::assertSame(0, $j->lastSequence(), 'a refusal moves no sequence');
    }

    public function testInboxKeepsArrivalOrderAndTheNewestCopy(): void
    {
        $j = $this->journal();
        $j->addToInbox('b', '{"n":1}');
        $j->addToInbox('a', '{"n":2}');
        $j->addToInbox('b', '{"n":3}');
        self::assertSame(['b' => '{"n":3}', 'a' => '{"n":2}'], $this->journal()->inbox());
        $j->removeFromInbox('b');
        $j->removeFromInbox('missing');
        self::assertSame(['a' => '{"n":2}'], $j->inbox());
    }

    public function testInstallationIdIsRemembered(): void
    {
        $this->journal()->rememberInstallationId('6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b');
        self::assertSame('6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b', $this->journal()->installationId());
    }

    public function testOneTickAtATime(): void
    {
        $a = $this->journal();
        $b = $this->journal();
        self::assertTrue($a->acquireLock(60));
        self::assertFalse($b->acquireLock(60));
        self::assertFalse($a->acquireLock(60), 'not re-entrant');
        $a->releaseLock();
        self::assertTrue($b->acquireLock(60));
        $b->releaseLock();
    }
}
