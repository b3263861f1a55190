<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Agent;

use Autoheal\Sdk\Heartbeat\HeartbeatResult;

/** What a tick did: the heartbeat, each command, the acks resent, and what went wrong. */
final class TickReport
{
    private bool $ran = true;
    private ?string $installationId = null;
    private ?HeartbeatResult $heartbeat = null;
    /** @var list<CommandOutcome> */
    private array $commands = [];
    private int $acksResent = 0;
    /** @var list<string> */
    private array $errors = [];

    public static function skipped(string $why): self
    {
        $r = new self();
        $r->ran = false;
        $r->errors[] = $why;
        return $r;
    }

    public function setHeartbeat(HeartbeatResult $heartbeat): void
    {
        $this->heartbeat = $heartbeat;
    }

    public function setInstallationId(?string $id): void
    {
        $this->installationId = $id;
    }

    public function add(CommandOutcome $outcome): void
    {
        $this->commands[] = $outcome;
    }

    public function ackResent(): void
    {
        $this->acksResent++;
    }

    public function error(string $what): void
    {
        $this->errors[] = $what;
    }

    public function ran(): bool
    {
        return $this->ran;
    }

    public function installationId(): ?string
    {
        return $this->installationId;
    }

    public function heartbeat(): ?HeartbeatResult
    {
        return $this->heartbeat;
    }

    /** @return list<CommandOutcome> */
    public function commands(): array
    {
        return $this->commands;
    }

    /** @return list<string> */
    public function errors(): array
    {
        return $this->errors;
    }

    /** @return array<string, mixed> */
    public function toArray(): array
    {
        return [
            'ran' => $this->ran,
            'installation_id' => $this->installationId,
            'heartbeat' => $this->heartbeat !== null,
            'commands' => array_map(static fn (CommandOutcome $c): array => $c->toArray(), $this->commands),
            'acks_resent' => $this->acksResent,
            'errors' => $this->errors,
        ];
    }
}
