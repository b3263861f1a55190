<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

use Autoheal\Sdk\AutohealException;

/**
 * A failed check: its reason code and a message for people. Thrown inside the verifiers
 * and turned into a refusing Verdict by CommandVerifier, so the first failed check wins.
 */
final class Refusal extends AutohealException
{
    private string $reason;
    private ?SignedCommand $command = null;

    public function __construct(string $reason, string $message)
    {
        parent::__construct($message);
        $this->reason = $reason;
    }

    /** The same refusal, about an authentic command (so its ack can name the signed id). */
    public function about(SignedCommand $command): self
    {
        $copy = new self($this->reason, $this->getMessage());
        $copy->command = $command;
        return $copy;
    }

    public function command(): ?SignedCommand
    {
        return $this->command;
    }

    public function reason(): string
    {
        return $this->reason;
    }
}
