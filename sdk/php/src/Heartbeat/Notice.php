<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Heartbeat;

use Autoheal\Sdk\Http\ProtocolException;

/** An in-app upgrade notice the merchant has not acknowledged (ack it with Agent::acknowledgeNotice). */
final class Notice
{
    private string $id;
    private string $priority;
    private string $subject;
    private string $currentVersion;
    private string $targetVersion;
    private bool $security;
    private string $createdAt;

    private function __construct()
    {
    }

    /** @param mixed $raw */
    public static function parse($raw): self
    {
        if (!$raw instanceof \stdClass) {
            throw new ProtocolException('heartbeat answer: a notice must be an object');
        }
        $f = get_object_vars($raw);
        foreach (['id', 'priority', 'subject', 'current_version', 'target_version', 'created_at'] as $key) {
            if (!is_string($f[$key] ?? null)) {
                throw new ProtocolException('heartbeat answer: notice.' . $key . ' must be a string');
            }
        }
        if (!is_bool($f['security'] ?? null)) {
            throw new ProtocolException('heartbeat answer: notice.security must be a boolean');
        }
        $n = new self();
        $n->id = $f['id'];
        $n->priority = $f['priority'];
        $n->subject = $f['subject'];
        $n->currentVersion = $f['current_version'];
        $n->targetVersion = $f['target_version'];
        $n->security = $f['security'];
        $n->createdAt = $f['created_at'];
        return $n;
    }

    public function id(): string
    {
        return $this->id;
    }

    /** low, normal, high or critical. */
    public function priority(): string
    {
        return $this->priority;
    }

    public function subject(): string
    {
        return $this->subject;
    }

    public function currentVersion(): string
    {
        return $this->currentVersion;
    }

    public function targetVersion(): string
    {
        return $this->targetVersion;
    }

    public function isSecurity(): bool
    {
        return $this->security;
    }

    public function createdAt(): string
    {
        return $this->createdAt;
    }
}
