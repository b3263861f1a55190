<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Heartbeat;

use Autoheal\Sdk\Http\ProtocolException;
use Autoheal\Sdk\Support\Json;

/** The heartbeat's answer: the install's id, Ops' toggles, upgrade notices and plugin flags. */
final class HeartbeatResult
{
    private string $installationId;
    private Toggles $toggles;
    /** @var list<Notice> */
    private array $notices;
    /** @var array<string, mixed> */
    private array $flags;

    private function __construct()
    {
    }

    /** @param mixed $answer decoded JSON */
    public static function parse($answer): self
    {
        if (!$answer instanceof \stdClass) {
            throw new ProtocolException('heartbeat answer is not a JSON object');
        }
        $f = get_object_vars($answer);
        if (!is_string($f['installation_id'] ?? null) || preg_match('/^[A-Za-z0-9-]{1,128}$/D', $f['installation_id']) !== 1) {
            throw new ProtocolException('heartbeat answer: installation_id must be an id');
        }
        if (!is_array($f['notices'] ?? null)) {
            throw new ProtocolException('heartbeat answer: notices must be an array');
        }
        $flags = $f['flags'] ?? new \stdClass();
        if (!$flags instanceof \stdClass) {
            throw new ProtocolException('heartbeat answer: flags must be an object');
        }
        $r = new self();
        $r->installationId = $f['installation_id'];
        $r->toggles = Toggles::parse($f['toggles'] ?? null);
        $r->notices = array_map([Notice::class, 'parse'], array_values($f['notices']));
        $r->flags = Json::toArray(get_object_vars($flags));
        return $r;
    }

    public function installationId(): string
    {
        return $this->installationId;
    }

    public function toggles(): Toggles
    {
        return $this->toggles;
    }

    /** @return list<Notice> */
    public function notices(): array
    {
        return $this->notices;
    }

    /** @return array<string, mixed> flag key => value (e.g. autoheal.auto_apply => true) */
    public function flags(): array
    {
        return $this->flags;
    }
}
