<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Events;

use Autoheal\Sdk\Http\ProtocolException;
use Autoheal\Sdk\Support\Json;

/**
 * The answer to an interop event: normalized (`ack`, possibly a `duplicate` of one sent
 * before) or stored as `failed` with the reason (nothing maps it, or its payload does not
 * fit the mapping) — never dropped either way.
 */
final class InteropResult
{
    private string $status;
    private ?string $eventId;
    private bool $duplicate;
    /** @var array<string, mixed>|null */
    private ?array $normalized;
    private ?string $errorCode;
    private ?string $errorMessage;

    private function __construct()
    {
    }

    /** @param mixed $answer */
    public static function parse($answer): self
    {
        $f = $answer instanceof \stdClass ? get_object_vars($answer) : null;
        if ($f === null || !in_array($f['status'] ?? null, ['ack', 'failed'], true)) {
            throw new ProtocolException('interop answer: expected status ack or failed');
        }
        $r = new self();
        $r->status = $f['status'];
        $r->eventId = is_string($f['event_id'] ?? null) ? $f['event_id'] : null;
        $r->duplicate = ($f['duplicate'] ?? false) === true;
        $r->normalized = ($f['normalized'] ?? null) instanceof \stdClass ? Json::toArray($f['normalized']) : null;
        $error = ($f['error'] ?? null) instanceof \stdClass ? get_object_vars($f['error']) : [];
        $r->errorCode = is_string($error['code'] ?? null) ? $error['code'] : null;
        $r->errorMessage = is_string($error['message'] ?? null) ? $error['message'] : null;
        if ($r->status === 'ack' && $r->eventId === null) {
            throw new ProtocolException('interop answer: an ack carries event_id');
        }
        return $r;
    }

    public function isNormalized(): bool
    {
        return $this->status === 'ack';
    }

    public function status(): string
    {
        return $this->status;
    }

    public function eventId(): ?string
    {
        return $this->eventId;
    }

    public function isDuplicate(): bool
    {
        return $this->duplicate;
    }

    /** @return array<string, mixed>|null the CloudEvents event */
    public function normalized(): ?array
    {
        return $this->normalized;
    }

    public function errorCode(): ?string
    {
        return $this->errorCode;
    }

    public function errorMessage(): ?string
    {
        return $this->errorMessage;
    }
}
