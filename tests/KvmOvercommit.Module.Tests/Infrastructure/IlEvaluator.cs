using System.Buffers.Binary;
using System.Reflection;
using System.Reflection.Emit;

namespace KvmOvercommit.Module.Tests.Infrastructure;

/// <summary>
/// Evaluates a small static method of one int-like argument that returns an int-like value (a switch expression over an
/// enum, as ErrorMapping.ToCategory is) by interpreting its compiled IL — the module cannot be loaded for execution here
/// (it references PowerShell), but its IL can be read through MetadataLoadContext. Supports the opcodes such switch
/// tables compile to (constants, arithmetic on the argument, switch, branches, locals, ret); anything else throws.
/// </summary>
public static class IlEvaluator
{
    static readonly Dictionary<short, OpCode> OpCodes = typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    public static long Evaluate(MethodInfo method, long argument)
    {
        var il = method.GetMethodBody()?.GetILAsByteArray() ?? throw new InvalidOperationException($"{method.Name} has no IL");
        var stack = new Stack<long>();
        var locals = new Dictionary<int, long>();
        var pc = 0;
        for (var steps = 0; steps < 10_000; steps++)
        {
            var code = il[pc] == 0xFE ? (short)(0xFE00 | il[pc + 1]) : il[pc];
            var op = OpCodes[code];
            pc += op.Size;
            int I4() { var v = BinaryPrimitives.ReadInt32LittleEndian(il.AsSpan(pc)); pc += 4; return v; }
            sbyte I1() => (sbyte)il[pc++];
            long Pop() => stack.Pop();
            bool Branch(Func<long, long, bool> test, bool shortForm)
            {
                var offset = shortForm ? I1() : I4();
                var b = Pop();
                var a = Pop();
                if (test(a, b)) pc += offset;
                return true;
            }
            switch (op.Name)
            {
                case "nop": break;
                case "ldarg.0": stack.Push(argument); break;
                case "ldarg.s" when il[pc++] == 0: stack.Push(argument); break;
                case "ldc.i4.m1": stack.Push(-1); break;
                case var n when n.StartsWith("ldc.i4.") && n.Length == 8 && char.IsDigit(n[7]): stack.Push(n[7] - '0'); break;
                case "ldc.i4.s": stack.Push(I1()); break;
                case "ldc.i4": stack.Push(I4()); break;
                case var n when n.StartsWith("stloc.") && n.Length == 7: locals[n[6] - '0'] = Pop(); break;
                case "stloc.s": locals[il[pc++]] = Pop(); break;
                case var n when n.StartsWith("ldloc.") && n.Length == 7: stack.Push(locals[n[6] - '0']); break;
                case "ldloc.s": stack.Push(locals[il[pc++]]); break;
                case "dup": stack.Push(stack.Peek()); break;
                case "pop": Pop(); break;
                case "add": { var b = Pop(); stack.Push(Pop() + b); break; }
                case "sub": { var b = Pop(); stack.Push(Pop() - b); break; }
                case "conv.i4" or "conv.u4" or "conv.i8" or "conv.u8" or "conv.i" or "conv.u": break;
                case "br": { var o = I4(); pc += o; break; }
                case "br.s": { var o = I1(); pc += o; break; }
                case "brtrue" or "brtrue.s": { var o = op.Name.EndsWith(".s") ? I1() : I4(); if (Pop() != 0) pc += o; break; }
                case "brfalse" or "brfalse.s": { var o = op.Name.EndsWith(".s") ? I1() : I4(); if (Pop() == 0) pc += o; break; }
                case "beq" or "beq.s": Branch((a, b) => a == b, op.Name.EndsWith(".s")); break;
                case "bne.un" or "bne.un.s": Branch((a, b) => a != b, op.Name.EndsWith(".s")); break;
                case "bgt" or "bgt.s": Branch((a, b) => a > b, op.Name.EndsWith(".s")); break;
                case "bgt.un" or "bgt.un.s": Branch((a, b) => (ulong)a > (ulong)b, op.Name.EndsWith(".s")); break;
                case "bge" or "bge.s": Branch((a, b) => a >= b, op.Name.EndsWith(".s")); break;
                case "bge.un" or "bge.un.s": Branch((a, b) => (ulong)a >= (ulong)b, op.Name.EndsWith(".s")); break;
                case "blt" or "blt.s": Branch((a, b) => a < b, op.Name.EndsWith(".s")); break;
                case "blt.un" or "blt.un.s": Branch((a, b) => (ulong)a < (ulong)b, op.Name.EndsWith(".s")); break;
                case "ble" or "ble.s": Branch((a, b) => a <= b, op.Name.EndsWith(".s")); break;
                case "ble.un" or "ble.un.s": Branch((a, b) => (ulong)a <= (ulong)b, op.Name.EndsWith(".s")); break;
                case "switch":
                {
                    var n = I4();
                    var targets = Enumerable.Range(0, n).Select(_ => I4()).ToArray();
                    var v = Pop();
                    if (v >= 0 && v < n) pc += targets[v];
                    break;
                }
                case "ret": return Pop();
                default: throw new NotSupportedException($"{method.Name}: IL opcode {op.Name} at {pc - op.Size} is not supported by the evaluator");
            }
        }
        throw new InvalidOperationException($"{method.Name}: no ret within 10000 steps");
    }
}
