<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

use Autoheal\Sdk\Operations\Operation;

/**
 * The outcome of verifying one polled command: accept (with the authentic signed payload,
 * the bundle's manifest and the parsed operations) or refuse (with the reason code from
 * the protocol's closed set and a message for people).
 */
final class Verdict
{
    private bool $accepted;
    private string $reason;
    private string $message;
    private ?SignedCommand $command;
    private ?Manifest $manifest;
    /** @var list<Operation> */
    private array $operations;
    private bool $redelivery;

    /** @param list<Operation> $operations */
    private function __construct(bool $accepted, string $reason, string $message, ?SignedCommand $command, ?Manifest $manifest, array $operations, bool $redelivery)
    {
        $this->accepted = $accepted;
        $this->reason = $reason;
        $this->message = $message;
        $this->command = $command;
        $this->manifest = $manifest;
        $this->operations = $operations;
        $this->redelivery = $redelivery;
    }

    /** @param list<Operation> $operations */
    public static function accept(SignedCommand $command, ?Manifest $manifest, array $operations, bool $redelivery): self
    {
        return new self(true, Reason::OK, 'the command verifies', $command, $manifest, $operations, $redelivery);
    }

    public static function refuse(Refusal $refusal, ?SignedCommand $command): self
    {
        return new self(false, $refusal->reason(), $refusal->getMessage(), $command, null, [], false);
    }

    public function isAccepted(): bool
    {
        return $this->accepted;
    }

    public function reason(): string
    {
        return $this->reason;
    }

    public function message(): string
    {
        return $this->message;
    }

    /** The signed payload: always set on accept; on refuse, set once check 9 passed. */
    public function command(): ?SignedCommand
    {
        return $this->command;
    }

    /** The bundle's manifest (null when verified without a bundle, or refused). */
    public function manifest(): ?Manifest
    {
        return $this->manifest;
    }

    /** @return list<Operation> the operations (or restore operations) to apply, in order */
    public function operations(): array
    {
        return $this->operations;
    }

    /** The journal already holds this command id: its recorded ack is resent, nothing applied. */
    public function isRedelivery(): bool
    {
        return $this->redelivery;
    }

    /** @return array{verdict: string, reason: string} */
    public function toArray(): array
    {
        return ['verdict' => $this->accepted ? 'accept' : 'refuse', 'reason' => $this->reason];
    }
}
