<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

use Autoheal\Sdk\Support\Text;

/**
 * A DSSE envelope as it arrived (check 1: its shape and payload type). Its base64 is
 * decoded separately (check 2) because the protocol checks both envelopes' shapes before
 * either's encoding.
 */
final class Envelope
{
    private string $payloadType;
    private string $payload;
    /** @var list<array{keyid: string, sig: string}> */
    private array $signatures;

    /** @param list<array{keyid: string, sig: string}> $signatures */
    private function __construct(string $payloadType, string $payload, array $signatures)
    {
        $this->payloadType = $payloadType;
        $this->payload = $payload;
        $this->signatures = $signatures;
    }

    /**
     * @param mixed $value
     * @throws Refusal malformed
     */
    public static function parse($value, string $expectedType, string $what): self
    {
        $shape = Shape::of($value, Reason::MALFORMED, $what)->only(['payloadType', 'payload', 'signatures']);
        $type = $shape->string('payloadType');
        if ($type !== $expectedType) {
            throw new Refusal(Reason::MALFORMED, $what . ' has payloadType `' . Text::clean($type, 80) . '`, expected `' . $expectedType . '`');
        }
        $signatures = [];
        foreach ($shape->list('signatures') as $i => $raw) {
            $sig = Shape::of($raw, Reason::MALFORMED, $what . '.signatures[' . $i . ']')->only(['keyid', 'sig']);
            $signatures[] = ['keyid' => $sig->string('keyid'), 'sig' => $sig->string('sig')];
        }
        return new self($type, $shape->string('payload'), $signatures);
    }

    /** @throws Refusal non_canonical_base64 */
    public function decode(string $what): DecodedEnvelope
    {
        $signatures = [];
        foreach ($this->signatures as $i => $s) {
            $signatures[] = ['keyid' => $s['keyid'], 'sig' => Base64::decode($s['sig'], $what . '.signatures[' . $i . '].sig')];
        }
        return new DecodedEnvelope($this->payloadType, Base64::decode($this->payload, $what . '.payload'), $signatures);
    }
}
