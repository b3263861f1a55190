<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Agent;

/** What one tick did with one command (one line of the tick's report). */
final class CommandOutcome
{
    /** Verified and applied (or attempted: see success). */
    public const ACCEPTED = 'accept';
    /** Refused by verification; nothing applied. */
    public const REFUSED = 'refuse';
    /** Known to the journal: its recorded ack was sent again, nothing applied. */
    public const REDELIVERED = 'redelivered';
    /** Kept in the inbox for the next tick (the bundle could not be fetched). */
    public const DEFERRED = 'deferred';
    /** An apply cut short by a crash, undone and acked as failed. */
    public const RECOVERED = 'recovered';

    private string $id;
    private string $verdict;
    private string $reason;
    private ?string $commandType;
    private ?bool $success;
    private ?int $appliedOperations;
    private string $ack;
    private ?string $error;

    public function __construct(string $id, string $verdict, string $reason, ?string $commandType, ?bool $success, ?int $appliedOperations, string $ack, ?string $error)
    {
        $this->id = $id;
        $this->verdict = $verdict;
        $this->reason = $reason;
        $this->commandType = $commandType;
        $this->success = $success;
        $this->appliedOperations = $appliedOperations;
        $this->ack = $ack;
        $this->error = $error;
    }

    public function id(): string
    {
        return $this->id;
    }

    public function verdict(): string
    {
        return $this->verdict;
    }

    public function reason(): string
    {
        return $this->reason;
    }

    public function success(): ?bool
    {
        return $this->success;
    }

    public function appliedOperations(): ?int
    {
        return $this->appliedOperations;
    }

    /** The ack's state: delivered, pending (retried next tick), rejected, or none. */
    public function ack(): string
    {
        return $this->ack;
    }

    public function error(): ?string
    {
        return $this->error;
    }

    /** @return array<string, mixed> */
    public function toArray(): array
    {
        return [
            'id' => $this->id,
            'command_type' => $this->commandType,
            'verdict' => $this->verdict,
            'reason' => $this->reason,
            'success' => $this->success,
            'applied_operations' => $this->appliedOperations,
            'ack' => $this->ack,
            'error' => $this->error,
        ];
    }
}
