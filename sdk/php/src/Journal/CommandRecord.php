<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Journal;

/**
 * What the journal knows of one command id: the verdict, how far an apply got (the
 * snapshot taken before it, and how many operations, counted from the first, are in effect),
 * and the ack decided for it and whether the server has it.
 *
 * Immutable: every change is a new record, saved whole.
 */
final class CommandRecord
{
    public const ACCEPTED = 'accepted';
    public const REFUSED = 'refused';

    /** Known only (a verifier's acceptance, or a seeded id): nothing applied, no ack owed. */
    public const PHASE_KNOWN = 'known';
    /** Accepted and being applied: a record left in this phase is an interrupted apply. */
    public const PHASE_APPLYING = 'applying';
    /** The outcome is decided and its ack recorded. */
    public const PHASE_DONE = 'done';

    public const ACK_NONE = 'none';
    public const ACK_PENDING = 'pending';
    public const ACK_DELIVERED = 'delivered';
    /** The server refused the ack for good (404, 409, 422): kept for people, not resent. */
    public const ACK_REJECTED = 'rejected';

    private string $id;
    private string $verdict;
    private string $reason;
    private string $phase;
    private ?int $sequence;
    private ?string $commandType;
    /** @var list<array<string, mixed>> */
    private array $operations;
    /** @var array<string, mixed>|null */
    private ?array $snapshot;
    private int $inEffect;
    /** @var array<string, mixed>|null */
    private ?array $ack;
    private string $ackState;
    private ?string $ackProblem;
    private int $updatedAt;

    private function __construct()
    {
    }

    /**
     * @param list<array<string, mixed>> $operations
     * @param array<string, mixed> $snapshot
     */
    public static function applying(string $id, int $sequence, string $commandType, array $operations, array $snapshot): self
    {
        $r = self::blank($id, self::ACCEPTED, 'ok', self::PHASE_APPLYING);
        $r->sequence = $sequence;
        $r->commandType = $commandType;
        $r->operations = $operations;
        $r->snapshot = $snapshot;
        return $r;
    }

    public static function known(string $id, ?int $sequence): self
    {
        $r = self::blank($id, self::ACCEPTED, 'ok', self::PHASE_KNOWN);
        $r->sequence = $sequence;
        return $r;
    }

    /** @param array<string, mixed> $ack */
    public static function refused(string $id, string $reason, array $ack): self
    {
        $r = self::blank($id, self::REFUSED, $reason, self::PHASE_DONE);
        $r->ack = $ack;
        $r->ackState = self::ACK_PENDING;
        return $r;
    }

    private static function blank(string $id, string $verdict, string $reason, string $phase): self
    {
        $r = new self();
        $r->id = $id;
        $r->verdict = $verdict;
        $r->reason = $reason;
        $r->phase = $phase;
        $r->sequence = null;
        $r->commandType = null;
        $r->operations = [];
        $r->snapshot = null;
        $r->inEffect = 0;
        $r->ack = null;
        $r->ackState = self::ACK_NONE;
        $r->ackProblem = null;
        $r->updatedAt = time();
        return $r;
    }

    public function withInEffect(int $count): self
    {
        $r = clone $this;
        $r->inEffect = $count;
        $r->updatedAt = time();
        return $r;
    }

    /** @param array<string, mixed> $ack */
    public function withAck(array $ack): self
    {
        $r = clone $this;
        $r->ack = $ack;
        $r->phase = self::PHASE_DONE;
        $r->ackState = self::ACK_PENDING;
        $r->updatedAt = time();
        return $r;
    }

    public function withAckState(string $state, ?string $problem = null): self
    {
        if (!in_array($state, [self::ACK_PENDING, self::ACK_DELIVERED, self::ACK_REJECTED], true) || $this->ack === null) {
            throw new \LogicException('an ack state needs a recorded ack');
        }
        $r = clone $this;
        $r->ackState = $state;
        $r->ackProblem = $problem;
        $r->updatedAt = time();
        return $r;
    }

    public function id(): string
    {
        return $this->id;
    }

    public function verdict(): string
    {
        return $this->verdict;
    }

    public function reason(): string
    {
        return $this->reason;
    }

    public function phase(): string
    {
        return $this->phase;
    }

    public function sequence(): ?int
    {
        return $this->sequence;
    }

    public function commandType(): ?string
    {
        return $this->commandType;
    }

    /** @return list<array<string, mixed>> */
    public function operations(): array
    {
        return $this->operations;
    }

    /** @return array<string, mixed>|null */
    public function snapshot(): ?array
    {
        return $this->snapshot;
    }

    public function inEffect(): int
    {
        return $this->inEffect;
    }

    /** @return array<string, mixed>|null */
    public function ack(): ?array
    {
        return $this->ack;
    }

    public function ackState(): string
    {
        return $this->ackState;
    }

    public function ackProblem(): ?string
    {
        return $this->ackProblem;
    }

    public function updatedAt(): int
    {
        return $this->updatedAt;
    }

    /** @return array<string, mixed> */
    public function toArray(): array
    {
        return [
            'id' => $this->id,
            'verdict' => $this->verdict,
            'reason' => $this->reason,
            'phase' => $this->phase,
            'sequence' => $this->sequence,
            'command_type' => $this->commandType,
            'operations' => $this->operations,
            'snapshot' => $this->snapshot,
            'in_effect' => $this->inEffect,
            'ack' => $this->ack,
            'ack_state' => $this->ackState,
            'ack_problem' => $this->ackProblem,
            'updated_at' => $this->updatedAt,
        ];
    }

    /**
     * A record as a journal stored it, checked field by field (a journal lives in a file or
     * table that something else could have changed).
     *
     * @param mixed $data
     */
    public static function fromArray($data): self
    {
        $bad = static fn (string $what): JournalException => new JournalException('journal record: ' . $what);
        if (!is_array($data)) {
            throw $bad('not an object');
        }
        $r = new self();
        foreach (['id', 'verdict', 'reason', 'phase', 'ack_state'] as $f) {
            if (!isset($data[$f]) || !is_string($data[$f])) {
                throw $bad($f . ' missing');
            }
        }
        $r->id = $data['id'];
        $r->verdict = $data['verdict'];
        $r->reason = $data['reason'];
        $r->phase = $data['phase'];
        $r->ackState = $data['ack_state'];
        if (!in_array($r->verdict, [self::ACCEPTED, self::REFUSED], true)
            || !in_array($r->phase, [self::PHASE_KNOWN, self::PHASE_APPLYING, self::PHASE_DONE], true)
            || !in_array($r->ackState, [self::ACK_NONE, self::ACK_PENDING, self::ACK_DELIVERED, self::ACK_REJECTED], true)) {
            throw $bad('unknown verdict, phase or ack state');
        }
        $r->sequence = isset($data['sequence']) ? self::int($data['sequence'], $bad) : null;
        $r->commandType = isset($data['command_type']) && is_string($data['command_type']) ? $data['command_type'] : null;
        $r->operations = isset($data['operations']) && is_array($data['operations']) ? array_values($data['operations']) : [];
        $r->snapshot = isset($data['snapshot']) && is_array($data['snapshot']) ? $data['snapshot'] : null;
        $r->inEffect = isset($data['in_effect']) ? self::int($data['in_effect'], $bad) : 0;
        $r->ack = isset($data['ack']) && is_array($data['ack']) ? $data['ack'] : null;
        $r->ackProblem = isset($data['ack_problem']) && is_string($data['ack_problem']) ? $data['ack_problem'] : null;
        $r->updatedAt = isset($data['updated_at']) ? self::int($data['updated_at'], $bad) : 0;
        if ($r->ackState !== self::ACK_NONE && $r->ack === null) {
            throw $bad('ack state without an ack');
        }
        return $r;
    }

    /**
     * @param mixed $v
     * @param callable(string): JournalException $bad
     */
    private static function int($v, callable $bad): int
    {
        // PDO on PHP < 8.1 returns numbers as strings; a journal's JSON keeps them as ints.
        if (is_int($v)) {
            return $v;
        }
        if (is_string($v) && preg_match('/^-?\d{1,18}$/D', $v) === 1) {
            return (int) $v;
        }
        throw $bad('a number field is not an integer');
    }
}
