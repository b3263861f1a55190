<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Apply;

/**
 * What applying a list of operations left: success, or the first failure and how many
 * operations (counted from the first) are still in effect after the undo — what an ack's
 * `applied_operations` reports.
 */
final class ApplyOutcome
{
    private bool $success;
    private int $inEffect;
    private ?string $error;

    private function __construct(bool $success, int $inEffect, ?string $error)
    {
        $this->success = $success;
        $this->inEffect = $inEffect;
        $this->error = $error;
    }

    public static function succeeded(int $count): self
    {
        return new self(true, $count, null);
    }

    public static function failed(int $inEffect, string $error): self
    {
        return new self(false, $inEffect, $error);
    }

    public function isSuccess(): bool
    {
        return $this->success;
    }

    public function inEffect(): int
    {
        return $this->inEffect;
    }

    public function error(): ?string
    {
        return $this->error;
    }
}
