<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

use Autoheal\Sdk\Journal\Journal;
use Autoheal\Sdk\Operations\OperationValidator;
use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Support\JsonException;
use Autoheal\Sdk\Support\Text;
use Autoheal\Sdk\Time\Clock;

/**
 * The protocol's checks 1 to 19, in order; the first that fails is the refusal's reason.
 * It only reads the journal: recording an acceptance (sequence first) is the caller's step,
 * taken before anything is applied.
 *
 * The checks run in two stages because the bundle to fetch is named by the signed payload:
 * checkCommand() (1–12) authenticates the payload, then checkBundle() (13–19) the bundle it
 * names. verify() runs both.
 */
final class CommandVerifier
{
    private TrustedRoots $roots;
    private Journal $journal;
    private Clock $clock;

    public function __construct(TrustedRoots $roots, Journal $journal, Clock $clock)
    {
        $this->roots = $roots;
        $this->journal = $journal;
        $this->clock = $clock;
    }

    /**
     * @param string $itemJson one item of the poll's answer, as received
     * @param string|null $bundleBytes the bundle file's bytes; null checks the command alone
     *        (13–18 skipped, 19 checks the operations' form only)
     * @param string|null $installId this install's id (null: unknown yet, so wrong_install)
     */
    public function verify(string $itemJson, ?string $bundleBytes, ?string $installId): Verdict
    {
        $command = null;
        try {
            $command = $this->checkCommand($itemJson, $installId);
            return $this->checkBundle($command, $bundleBytes);
        } catch (Refusal $refusal) {
            return Verdict::refuse($refusal, $refusal->command() ?? $command);
        }
    }

    /**
     * Checks 1–12.
     *
     * @throws Refusal
     */
    public function checkCommand(string $itemJson, ?string $installId): SignedCommand
    {
        try {
            $item = Json::decode($itemJson);
        } catch (JsonException $e) {
            throw new Refusal(Reason::MALFORMED, 'the command is not JSON');
        }
        // 1. The item is unsigned: only its two envelopes are read, nothing else of it.
        $fields = Shape::of($item, Reason::MALFORMED, 'command');
        $signed = Envelope::parse($fields->raw('signed'), Dsse::COMMAND_TYPE, 'signed');
        $certificate = Envelope::parse($fields->raw('certificate'), Dsse::CERTIFICATE_TYPE, 'certificate');
        // 2.
        $certificate = $certificate->decode('certificate');
        $signed = $signed->decode('signed');
        // 3, 4.
        $rootKeys = [];
        foreach ($this->roots->keyIds() as $id) {
            $rootKeys[$id] = (string) $this->roots->get($id);
        }
        $certPayload = $certificate->verifiedPayload($rootKeys, Reason::CERTIFICATE_UNKNOWN_KEY, Reason::CERTIFICATE_SIGNATURE_INVALID, 'the command key certificate');
        // 5, 6.
        $cert = Certificate::parse($certPayload);
        $now = $this->clock->now();
        $cert->checkValidAt($now);
        // 7, 8.
        $payload = $signed->verifiedPayload([$cert->keyId() => $cert->publicKey()], Reason::UNKNOWN_KEY, Reason::SIGNATURE_INVALID, 'the command');
        // 9.
        $command = SignedCommand::parse($payload);
        try {
            $this->checkFor($command, $installId);
        } catch (Refusal $refusal) {
            throw $refusal->about($command);
        }
        return $command;
    }

    /** Checks 10–12 on an authentic payload. */
    private function checkFor(SignedCommand $command, ?string $installId): void
    {
        $now = $this->clock->now();
        // 10.
        if ($installId === null) {
            throw new Refusal(Reason::WRONG_INSTALL, 'this plugin does not know its installation id yet (no heartbeat answered)');
        }
        if ($command->installId() !== Uuid::normalize($installId)) {
            throw new Refusal(Reason::WRONG_INSTALL, 'the command is for install ' . Text::clean($command->installId(), 64) . ', not this one');
        }
        // 11.
        if (!$now->isBefore($command->expiresAt())) {
            throw new Refusal(Reason::COMMAND_EXPIRED, 'the command expired at ' . $command->expiresAt()->format());
        }
        // 12.
        $this->checkSequence($command);
    }

    /**
     * Checks 13–19, on a command that passed 1–12.
     *
     * @throws Refusal
     */
    public function checkBundle(SignedCommand $command, ?string $bundleBytes): Verdict
    {
        $manifest = null;
        $declared = null;
        if ($bundleBytes !== null) {
            // 13–15.
            $manifest = (new BundleVerifier($this->roots))->verify($bundleBytes, $command->bundle());
            // 16.
            if (!$this->clock->now()->isBefore($manifest->expiresAt())) {
                throw new Refusal(Reason::BUNDLE_EXPIRED, 'the bundle expired at ' . $manifest->expiresAt()->format());
            }
            // 17.
            if ($manifest->name() !== $command->bundle()->name() || $manifest->version() !== $command->bundle()->version()) {
                throw new Refusal(Reason::BUNDLE_MISMATCH, 'the bundle is ' . $manifest->name() . ' ' . $manifest->version()
                    . ', the command names ' . $command->bundle()->name() . ' ' . Text::clean($command->bundle()->version(), 64));
            }
            // 18. Equal is fine: one bundle serves several commands, and every rollback.
            $newest = $this->journal->newestBundleVersion($manifest->name());
            if ($newest !== null && SemVer::compare($manifest->version(), $newest) < 0) {
                throw new Refusal(Reason::DOWNGRADE, $manifest->name() . ' ' . $manifest->version() . ' is older than the accepted ' . $newest);
            }
            $declared = $manifest->operations();
        }
        // 19.
        $operations = OperationValidator::check($command->isRollback(), $command->operationLists(), $declared);
        return Verdict::accept($command, $manifest, $operations, $this->journal->find($command->id()) !== null);
    }

    /**
     * Replay is refused by sequence. A command id the journal holds is a redelivery (after
     * a lease ran out, with a new sequence) and passes whatever its sequence, unless it is
     * the very delivery the journal recorded (same sequence): that is a replay.
     */
    private function checkSequence(SignedCommand $command): void
    {
        $last = $this->journal->lastSequence();
        if ($command->sequence() > $last) {
            return;
        }
        $known = $this->journal->find($command->id());
        if ($known !== null && $known->sequence() !== $command->sequence()) {
            return;
        }
        if ($command->sequence() === $last) {
            throw new Refusal(Reason::REPLAYED, 'sequence ' . $command->sequence() . ' was accepted already');
        }
        throw new Refusal(Reason::OUT_OF_ORDER, 'sequence ' . $command->sequence() . ' is below the last accepted, ' . $last);
    }
}
