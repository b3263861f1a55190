<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Events;

use Autoheal\Sdk\Http\ProtocolException;

/** The answer to a telemetry event. */
final class EventResult
{
    private string $eventId;
    private ?string $installationId;
    private bool $blocked;

    private function __construct(string $eventId, ?string $installationId, bool $blocked)
    {
        $this->eventId = $eventId;
        $this->installationId = $installationId;
        $this->blocked = $blocked;
    }

    /** @param mixed $answer */
    public static function parse($answer): self
    {
        $f = $answer instanceof \stdClass ? get_object_vars($answer) : null;
        if ($f === null || !is_string($f['event_id'] ?? null) || !(is_string($f['installation_id'] ?? null) || ($f['installation_id'] ?? null) === null) || !is_bool($f['blocked'] ?? null)) {
            throw new ProtocolException('event answer: expected event_id, installation_id and blocked');
        }
        return new self($f['event_id'], $f['installation_id'], $f['blocked']);
    }

    public function eventId(): string
    {
        return $this->eventId;
    }

    /** Null before the install's first heartbeat (the event is kept anyway). */
    public function installationId(): ?string
    {
        return $this->installationId;
    }

    /** Ops blocked this install (its events are still stored). */
    public function isBlocked(): bool
    {
        return $this->blocked;
    }
}
