<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Agent;

use Autoheal\Sdk\Apply\ApplyOutcome;
use Autoheal\Sdk\Apply\OperationApplier;
use Autoheal\Sdk\Apply\Snapshot;
use Autoheal\Sdk\AutohealException;
use Autoheal\Sdk\Http\Client;
use Autoheal\Sdk\Journal\CommandRecord;
use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Log\Logger;
use Autoheal\Sdk\Operations\Operation;
use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Support\JsonException;
use Autoheal\Sdk\Verify\CommandVerifier;
use Autoheal\Sdk\Verify\Refusal;
use Autoheal\Sdk\Verify\SignedCommand;
use Autoheal\Sdk\Verify\Verdict;

/**
 * One command from the inbox to its ack: a command the journal already decided gets its
 * recorded ack again; otherwise verify (fetching the bundle the signed payload names),
 * journal the acceptance and the snapshot, apply, journal the outcome, ack.
 */
final class CommandProcessor
{
    /** The inbox key of an item without an id of its own. */
    public const UNLISTED = 'unlisted-';

    private Client $client;
    private Journal $journal;
    private CommandVerifier $verifier;
    private OperationApplier $applier;
    private Acks $acks;
    private Logger $logger;

    public function __construct(Client $client, Journal $journal, CommandVerifier $verifier, OperationApplier $applier, Acks $acks, Logger $logger)
    {
        $this->client = $client;
        $this->journal = $journal;
        $this->verifier = $verifier;
        $this->applier = $applier;
        $this->acks = $acks;
        $this->logger = $logger;
    }

    /** @param string $inboxId the item's own (unsigned) id, as the server handed it out */
    public function process(string $inboxId, string $json, ?string $installId): CommandOutcome
    {
        $known = $this->journal->find($inboxId);
        if ($known !== null && $known->ack() !== null) {
            return $this->redeliver($inboxId, $known);
        }
        if ($known !== null && $known->phase() === CommandRecord::PHASE_APPLYING) {
            // Its interrupted apply is not undone yet (recovery failed this tick): verifying
            // it again would refuse it as replayed and lose what the journal knows.
            return new CommandOutcome($inboxId, CommandOutcome::DEFERRED, 'recovery_pending', $known->commandType(), null, null, CommandRecord::ACK_NONE, 'the interrupted apply is undone first');
        }
        try {
            $command = $this->verifier->checkCommand($json, $installId);
        } catch (Refusal $refusal) {
            return $this->refuse($inboxId, Verdict::refuse($refusal, $refusal->command()));
        }
        try {
            $bundle = $this->client->fetch(Client::path('api/v1/plugins/autoheal/bundles/%s/%s', $command->bundle()->name(), $command->bundle()->version()))->body();
        } catch (AutohealException $e) {
            // Not a verdict: the bundle may be fetched next tick. (A command that stays
            // unfetchable expires, and is then refused as such.)
            $this->logger->log('warning', 'bundle not fetched, the command waits in the inbox', ['command' => $inboxId, 'error' => $e->getMessage()]);
            return new CommandOutcome($inboxId, CommandOutcome::DEFERRED, 'bundle_unavailable', $command->commandType(), null, null, CommandRecord::ACK_NONE, $e->getMessage());
        }
        try {
            $verdict = $this->verifier->checkBundle($command, $bundle);
        } catch (Refusal $refusal) {
            return $this->refuse($inboxId, Verdict::refuse($refusal, $command));
        }
        $signedRecord = $this->journal->find($command->id());
        if ($signedRecord !== null && $signedRecord->ack() !== null) {
            return $this->redeliver($inboxId, $signedRecord);
        }
        if ($command->id() !== $inboxId) {
            $this->logger->log('warning', 'the command\'s signed id differs from its listed id; the signed one is acked', ['listed' => $inboxId, 'signed' => $command->id()]);
        }
        return $this->apply($inboxId, $command, $verdict);
    }

    private function apply(string $inboxId, SignedCommand $command, Verdict $verdict): CommandOutcome
    {
        $operations = $verdict->operations();
        $snapshot = $this->applier->snapshot($operations);
        $record = CommandRecord::applying(
            $command->id(),
            $command->sequence(),
            $command->commandType(),
            array_map(static fn (Operation $op): array => $op->toArray(), $operations),
            $snapshot->toArray()
        );
        // The sequence (and the bundle version) first: from here on these bytes are spent.
        $this->journal->recordAccepted($command->sequence(), [$command->bundle()->name() => $command->bundle()->version()], $record);
        $outcome = $this->applier->apply($operations, $snapshot, function (int $inEffect) use (&$record): void {
            $record = $record->withInEffect($inEffect);
            $this->journal->save($record);
        });
        $record = $record->withInEffect($outcome->inEffect())->withAck($this->acks->applied($command->isRollback(), $outcome));
        $this->journal->save($record);
        $record = $this->acks->deliver($record);
        $this->journal->removeFromInbox($inboxId);
        $this->logger->log($outcome->isSuccess() ? 'info' : 'error', $command->commandType() . ($outcome->isSuccess() ? ' applied' : ' failed'), [
            'command' => $command->id(), 'in_effect' => $outcome->inEffect(), 'error' => $outcome->error(),
        ]);
        return new CommandOutcome($command->id(), CommandOutcome::ACCEPTED, 'ok', $command->commandType(), $outcome->isSuccess(), $command->isRollback() ? null : $outcome->inEffect(), $record->ackState(), $outcome->error());
    }

    /**
     * A refusal is acked under the id the server listed the item with: that is the command
     * it leased to this install, whatever the (unauthenticated) rest of the item says.
     */
    private function refuse(string $inboxId, Verdict $verdict): CommandOutcome
    {
        $this->logger->log('warning', 'command refused', ['command' => $inboxId, 'reason' => $verdict->reason(), 'why' => $verdict->message()]);
        $type = $verdict->command() !== null ? $verdict->command()->commandType() : null;
        $record = CommandRecord::refused($inboxId, $verdict->reason(), $this->acks->refused($verdict->reason(), $verdict->message()));
        if (strpos($inboxId, self::UNLISTED) === 0) {
            // No id to ack under: the server will hand out the real command again.
            $record = $record->withAckState(CommandRecord::ACK_REJECTED, 'the item carries no id');
            $this->journal->save($record);
        } else {
            $this->journal->save($record);
            $record = $this->acks->deliver($record);
        }
        $this->journal->removeFromInbox($inboxId);
        return new CommandOutcome($inboxId, CommandOutcome::REFUSED, $verdict->reason(), $type, false, null, $record->ackState(), $verdict->message());
    }

    /** Handed out again (its ack was lost, or its lease ran out): the journal's ack, not a second apply. */
    private function redeliver(string $inboxId, CommandRecord $record): CommandOutcome
    {
        $record = $this->acks->deliver($record);
        $this->journal->removeFromInbox($inboxId);
        $ack = (array) $record->ack();
        $result = (array) ($ack['result'] ?? []);
        return new CommandOutcome($record->id(), CommandOutcome::REDELIVERED, $record->reason(), $record->commandType(), ($ack['success'] ?? false) === true, isset($result['applied_operations']) ? (int) $result['applied_operations'] : null, $record->ackState(), null);
    }

    /** An ack that did not get through on an earlier tick. */
    public function resend(CommandRecord $record): CommandRecord
    {
        return $this->acks->deliver($record);
    }

    /** An apply a crash cut short: undo what may be in effect, then ack it as failed. */
    public function recover(CommandRecord $record): CommandOutcome
    {
        $rollback = $record->commandType() === SignedCommand::ROLLBACK;
        try {
            $operations = array_map([Operation::class, 'fromArray'], $record->operations());
            $outcome = $this->applier->recover($operations, Snapshot::fromArray((array) $record->snapshot()), $record->inEffect(), function (int $inEffect) use (&$record): void {
                $record = $record->withInEffect($inEffect);
                $this->journal->save($record);
            });
        } catch (Refusal $e) {
            // The journal's copy of the operations is unreadable: report what it says is in effect.
            $outcome = ApplyOutcome::failed($record->inEffect(), 'interrupted, and the journal record cannot be undone: ' . $e->getMessage());
        }
        $record = $record->withInEffect($outcome->inEffect())->withAck($this->acks->applied($rollback, $outcome));
        $this->journal->save($record);
        $record = $this->acks->deliver($record);
        return new CommandOutcome($record->id(), CommandOutcome::RECOVERED, 'ok', $record->commandType(), false, $rollback ? null : $outcome->inEffect(), $record->ackState(), $outcome->error());
    }

    /**
     * The order to work through the inbox: by the sequence the items carry (unsigned, used
     * only to order), so that a batch is not refused out_of_order for being taken in the
     * wrong order; items without one last, in arrival order.
     *
     * @param array<string, string> $inbox
     * @return array<string, string>
     */
    public static function order(array $inbox): array
    {
        $keys = [];
        $position = 0;
        foreach ($inbox as $id => $json) {
            $sequence = PHP_INT_MAX;
            try {
                $item = Json::decode($json);
                if ($item instanceof \stdClass && isset($item->sequence) && is_int($item->sequence)) {
                    $sequence = $item->sequence;
                }
            } catch (JsonException $e) {
                // Stays last; verification refuses it as malformed.
            }
            $keys[(string) $id] = [$sequence, $position++];
        }
        uksort($inbox, static fn ($a, $b): int => $keys[(string) $a] <=> $keys[(string) $b]);
        return $inbox;
    }
}
