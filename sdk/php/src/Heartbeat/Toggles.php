<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Heartbeat;

use Autoheal\Sdk\Http\ProtocolException;

/** Ops' switches for this install, as the heartbeat answers them. */
final class Toggles
{
    private bool $blockPlugin;
    private bool $enableDebug;
    private bool $forceUpdate;
    private ?int $rateLimit;

    private function __construct(bool $blockPlugin, bool $enableDebug, bool $forceUpdate, ?int $rateLimit)
    {
        $this->blockPlugin = $blockPlugin;
        $this->enableDebug = $enableDebug;
        $this->forceUpdate = $forceUpdate;
        $this->rateLimit = $rateLimit;
    }

    /** @param mixed $raw the answer's `toggles` (decoded JSON) */
    public static function parse($raw): self
    {
        if (!$raw instanceof \stdClass) {
            throw new ProtocolException('heartbeat answer: toggles must be an object');
        }
        $t = get_object_vars($raw);
        foreach (['block_plugin', 'enable_debug', 'force_update'] as $key) {
            if (!is_bool($t[$key] ?? null)) {
                throw new ProtocolException('heartbeat answer: toggles.' . $key . ' must be a boolean');
            }
        }
        if (!array_key_exists('rate_limit', $t) || !($t['rate_limit'] === null || (is_int($t['rate_limit']) && $t['rate_limit'] >= 1))) {
            throw new ProtocolException('heartbeat answer: toggles.rate_limit must be null or requests per minute');
        }
        return new self($t['block_plugin'], $t['enable_debug'], $t['force_update'], $t['rate_limit']);
    }

    public function blockPlugin(): bool
    {
        return $this->blockPlugin;
    }

    public function enableDebug(): bool
    {
        return $this->enableDebug;
    }

    public function forceUpdate(): bool
    {
        return $this->forceUpdate;
    }

    /** Requests per minute the server allows this install, or null for no limit. */
    public function rateLimit(): ?int
    {
        return $this->rateLimit;
    }
}
