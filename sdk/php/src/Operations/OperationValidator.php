<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Operations;

use Autoheal\Sdk\Verify\Reason;
use Autoheal\Sdk\Verify\Refusal;

/**
 * Check 19, in the order of the server's reference verifier (host::command::verify_command):
 *
 *   1. both lists the payload carries (`operations`, `restore_operations`) are lists of
 *      operations of the right shape — invalid_operation;
 *   2. an apply carries `operations` and no `restore_operations`, a rollback the reverse —
 *      malformed;
 *   3. the list to apply: at most 64, every value valid, and no drop_column in an apply (a
 *      patch may not drop what it did not create) — invalid_operation;
 *   4. each of a kind the manifest declares; for a rollback, of a kind that undoes a
 *      declared one — undeclared_operation.
 */
final class OperationValidator
{
    public const MAX_OPERATIONS = 64;

    private function __construct()
    {
    }

    /**
     * @param array<string, mixed> $lists the payload's `operations` and/or
     *        `restore_operations`, as decoded (only the keys it carries)
     * @param list<string>|null $declared the manifest's `operations`; null: no bundle to
     *        judge against (a verifier run without one) — steps 1–3 only
     * @return list<Operation> the operations to apply, in order
     * @throws Refusal
     */
    public static function check(bool $rollback, array $lists, ?array $declared): array
    {
        $parsed = [];
        foreach (['operations', 'restore_operations'] as $name) {
            if (array_key_exists($name, $lists)) {
                $parsed[$name] = self::parseList($lists[$name], $name);
            }
        }
        $use = $rollback ? 'restore_operations' : 'operations';
        $other = $rollback ? 'operations' : 'restore_operations';
        if (!isset($parsed[$use]) || isset($parsed[$other])) {
            throw new Refusal(Reason::MALFORMED, 'an apply carries `operations`, a rollback `restore_operations`, and nothing else');
        }
        $operations = $parsed[$use];
        if (count($operations) > self::MAX_OPERATIONS) {
            throw new Refusal(Reason::INVALID_OPERATION, 'more than ' . self::MAX_OPERATIONS . ' operations');
        }
        foreach ($operations as $i => $op) {
            $op->validate($i);
        }
        if (!$rollback) {
            foreach ($operations as $i => $op) {
                if ($op->kind() === OperationKind::DROP_COLUMN) {
                    throw new Refusal(Reason::INVALID_OPERATION, 'operation ' . $i . ': drop_column is a restore operation only');
                }
            }
        }
        if ($declared !== null) {
            self::checkDeclared($rollback, $operations, $declared);
        }
        return $operations;
    }

    /**
     * @param list<Operation> $operations
     * @param list<string> $declared
     */
    private static function checkDeclared(bool $rollback, array $operations, array $declared): void
    {
        $allowed = $declared;
        if ($rollback) {
            $allowed = [];
            foreach ($declared as $kind) {
                $allowed = array_merge($allowed, OperationKind::inverses($kind));
            }
        }
        foreach ($operations as $i => $op) {
            if (!in_array($op->kind(), $allowed, true)) {
                throw new Refusal(Reason::UNDECLARED_OPERATION, ($rollback ? 'restore operation ' : 'operation ') . $i . ': `' . $op->kind() . '` '
                    . ($rollback ? 'undoes none of the operations the bundle declares' : 'is not among the operations the bundle declares'));
            }
        }
    }

    /**
     * @param mixed $raw
     * @return list<Operation>
     */
    private static function parseList($raw, string $name): array
    {
        if (!is_array($raw)) {
            throw new Refusal(Reason::INVALID_OPERATION, '`' . $name . '` must be a list of operations');
        }
        $operations = [];
        foreach ($raw as $i => $item) {
            $operations[] = Operation::parse($item, (int) $i);
        }
        return $operations;
    }
}
